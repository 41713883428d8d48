"""Finding the cases of a collection: every kind ``medmask pack`` reads, in one walk.

A tree may hold, at any depth and mixed:

* **NIfTI case folders**: a folder that directly holds ``.nii.gz`` / ``.nii`` masks (in
  TotalSegmentator's layout ``CASE/segmentations/`` is the case and ``CASE/ct.nii.gz``
  beside it is not a mask);
* **NIfTI label maps**, when a label table is given (``labels`` / ``scheme``): then every
  NIfTI file is one case, a numbered label map;
* **DICOM SEG series**: files told from other DICOM by the SOP Class UID of their file meta
  (whatever their names); the instances of one SEG series (one SeriesInstanceUID) make one
  case. The images of the series a SEG references, when they are in the tree, give it its
  full grid; other DICOM files are skipped and counted;
* **3D Slicer segmentations** (``.seg.nrrd``), one case each;
* files of any other format of the format table that ``pack`` reads (one case each).

Only the first bytes of each file are read (a SEG's header up to its per-frame groups).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..conversions.dicom_seg.header import DicomHeader, read_dicom_header
from ..conversions.names import NIFTI_SUFFIXES
from ..conversions.nifti.cases import holds_masks
from ..errors import MaskValidationError
from ..io.formats import identify
from ..io.target import Target

__all__ = ["Case", "Discovery", "discover", "SKIPPED_DICOM", "SKIPPED_REPEATS"]

#: Bytes read to tell what a file is.
_SNIFF = 4096
#: What the report calls the DICOM files that are not SEGs.
SKIPPED_DICOM = "DICOM files that are not a SEG"
#: What the report calls SEG files holding an instance another file already holds.
SKIPPED_REPEATS = "copies of a SEG instance"
#: Heads of objects read at once from a store.
_FETCHES = 8


@dataclass(frozen=True)
class Case:
    """One case: what becomes one archive.

    Attributes:
        kind: Its format in the format table: ``"folder"`` (a folder of NIfTI masks),
            ``"nifti"`` (a label map), ``"dicom-seg"``, ``"seg.nrrd"``, or another kind
            ``pack`` reads.
        source: The case folder or file (for a SEG series: its first instance), a local
            path or a URL.
        rel: Its path below the root (``/``-separated; ``""`` for the root itself).
        files: A SEG series: every instance (``source`` first).
        reference: A SEG: the files of the image series it references, when they are in
            the tree.
        ids: A SEG: its identifiers (``medmask.conversions.dicom_seg.seg_identifiers``).
        name_hint: A SEG: what its archive is named after (the ``--name-by`` attribute,
            else the referenced SeriesInstanceUID), when it has one.
        storage_options: fsspec options of a URL case.
    """

    kind: str
    source: str
    rel: str
    files: tuple[str, ...] = ()
    reference: tuple[str, ...] = ()
    ids: Mapping[str, Any] = field(default_factory=dict)
    name_hint: str | None = None
    storage_options: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def target(self) -> Target:
        """:attr:`source` as a :class:`~medmask.io.Target`."""
        return Target.of(self.source, self.storage_options or None)

    def __fspath__(self) -> str:
        """Its :attr:`source`: a case opens where it lives (``Path(case)``)."""
        return self.source

    def __str__(self) -> str:
        return self.source


@dataclass
class Discovery:
    """What :func:`discover` found.

    Attributes:
        root: The root walked.
        cases: The cases, sorted by relative path.
        skipped: ``{what: count}`` of files left out on purpose (DICOM files that are
            not SEGs: :data:`SKIPPED_DICOM`; a SEG instance found again in another file:
            :data:`SKIPPED_REPEATS`, the first file by path is packed).
    """

    root: str
    cases: list[Case]
    skipped: dict[str, int] = field(default_factory=dict)


@dataclass
class _File:
    rel: str  # path below the root, "/"-separated
    path: str  # local path or URL


def _walk_local(root: Path) -> tuple[list[_File], set[str]]:
    """Every non-hidden file below ``root`` and every folder (relative, ``/``-separated)."""
    files: list[_File] = []
    folders: set[str] = {""}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir
        folders.update(posixpath.join(rel_dir, d) for d in dirnames)
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            full = Path(dirpath) / name
            if full.is_file():
                files.append(_File(posixpath.join(rel_dir, name), str(full)))
    return files, folders


def _url_key(url: str) -> str:
    return str(url).split("://", 1)[-1].strip("/")


def _walk_url(root: Target) -> tuple[list[_File], set[str]]:
    from ..io.remote import list_files

    root_key = _url_key(root.path)
    files, folders = [], {""}
    for url in list_files(root.path, (), storage_options=root.storage_options):
        rel = _url_key(url)[len(root_key) :].strip("/")
        parts = rel.split("/")
        if not rel or any(p.startswith(".") for p in parts):
            continue
        files.append(_File(rel, url))
        folders.update("/".join(parts[:k]) for k in range(1, len(parts)))
    return sorted(files, key=lambda f: f.rel), folders


def _is_nifti(name: str) -> bool:
    return name.lower().endswith(NIFTI_SUFFIXES)


def _nifti_cases(
    niftis: list[_File], folders: set[str], root: Target, label_maps: bool
) -> list[Case]:
    """Folder cases (or, with a label table, one label-map case per file)."""
    opts = root.storage_options
    if label_maps:
        return [Case("nifti", f.path, f.rel, storage_options=opts) for f in niftis]
    by_folder: dict[str, list[_File]] = {}
    for f in niftis:
        by_folder.setdefault(posixpath.dirname(f.rel), []).append(f)
    cases = []
    for rel in sorted(by_folder):
        if posixpath.join(rel, "segmentations") in folders:
            continue  # CASE/ct.nii.gz beside CASE/segmentations/: the image, not a mask
        if not holds_masks([posixpath.basename(f.rel) for f in by_folder[rel]]):
            continue  # a folder of images only (nnU-Net's imagesTr/case_0000.nii.gz)
        first = by_folder[rel][0].path
        where = first.rsplit("/", 1)[0] if root.is_url else str(Path(first).parent)
        cases.append(Case("folder", where, rel, storage_options=opts))
    return cases


def _reader(root: Target, f: _File) -> Callable[[int], bytes]:
    if not root.is_url:

        def read(n: int) -> bytes:
            with open(f.path, "rb") as fh:
                return fh.read(n)

        return read
    target = Target.of(f.path, root.storage_options or None)
    return target.read_head


def _sniff(root: Target, f: _File) -> tuple[str | None, DicomHeader | None, str | None]:
    """``(kind, DICOM header, error)`` of one file: its format's kind by content (``None``:
    no format ``pack`` cares about), its header when it is DICOM, and why a DICOM header
    could not be read."""
    read = _reader(root, f)
    if f.rel.lower().endswith(".seg.nrrd"):
        return "seg.nrrd", None, None
    try:
        head = read(_SNIFF)
    except OSError:
        return None, None, None
    fmt = identify(head)
    if fmt is None:
        return None, None, None
    if fmt.kind not in ("dicom-seg", "dicom"):
        packable = fmt.capabilities.pack and not fmt.folder and not fmt.fallback
        return (fmt.kind if packable else None), None, None
    try:
        return fmt.kind, read_dicom_header(f.path, read=read), None
    except MaskValidationError as exc:
        return fmt.kind, None, str(exc)


def _sniff_all(root: Target, files: list[_File]) -> Iterator[tuple[_File, tuple]]:
    if not root.is_url:
        for f in files:
            yield f, _sniff(root, f)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=_FETCHES) as pool:
        yield from zip(files, pool.map(lambda f: _sniff(root, f), files), strict=True)


def discover(
    root: str | os.PathLike | Target,
    *,
    label_maps: bool = False,
    name_by: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Discovery:
    """Every case under ``root``, of every kind ``pack`` reads.

    Args:
        root: The collection's root (or one case folder or file): a path, a URL or a
            :class:`~medmask.io.Target`.
        label_maps: NIfTI files are label maps (a label table was given): one case each,
            instead of folders of binary masks.
        name_by: A DICOM attribute keyword (``PatientID``, ``StudyInstanceUID``...) whose
            value in each SEG names its archive (see :func:`medmask.packing.plan_outputs`).
        storage_options: fsspec options for a URL given as a string.

    Returns:
        A :class:`Discovery`: the cases sorted by relative path, and the files skipped.

    Raises:
        FileNotFoundError: A local ``root`` that does not exist.
        RemoteReadError: A URL root that cannot be listed.
    """
    t = Target.of(root, storage_options)
    if not t.is_url:
        path = Path(t.path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such folder")
        if path.is_file():
            files, folders = [_File(path.name, str(path))], {""}
            t = Target(path.parent)
        else:
            files, folders = _walk_local(path)
    else:
        files, folders = _walk_url(t)
    niftis = [f for f in files if _is_nifti(posixpath.basename(f.rel))]
    cases = _nifti_cases(niftis, folders, t, label_maps)
    others = [f for f in files if not _is_nifti(posixpath.basename(f.rel))]
    segs: list[tuple[_File, DicomHeader | None, str | None]] = []
    images: dict[str, list[str]] = {}
    skipped: dict[str, int] = {}
    for f, (kind, header, error) in _sniff_all(t, others):
        if kind == "dicom-seg":
            segs.append((f, header, error))
        elif kind == "dicom":
            skipped[SKIPPED_DICOM] = skipped.get(SKIPPED_DICOM, 0) + 1
            if header is not None and header.series_uid:
                images.setdefault(header.series_uid, []).append(f.path)
        elif kind is not None:
            cases.append(Case(kind, f.path, f.rel, storage_options=t.storage_options))
    cases += _seg_cases(segs, images, name_by, t.storage_options, skipped)
    return Discovery(t.path, sorted(cases, key=lambda c: (c.rel, c.kind)), skipped)


def _seg_cases(
    segs: list[tuple[_File, DicomHeader | None, str | None]],
    images: dict[str, list[str]],
    name_by: str | None,
    storage_options: Mapping[str, Any],
    skipped: dict[str, int],
) -> list[Case]:
    """One case per SEG series (its instances together, each once: copies of an instance
    are counted in ``skipped``); a SEG whose header cannot be read is a case of its own
    (packing it reports why)."""
    series: dict[str, list[tuple[_File, DicomHeader]]] = {}
    cases = []
    for f, header, _error in segs:
        if header is None or not header.series_uid:
            cases.append(
                Case("dicom-seg", f.path, f.rel, (f.path,), storage_options=storage_options)
            )
            continue
        series.setdefault(header.series_uid, []).append((f, header))
    for group in series.values():
        group.sort(key=lambda m: m[0].rel)
        members, seen = [], set()
        for f, header in group:
            uid = header.ids.get("SOPInstanceUID")
            if uid and uid in seen:
                skipped[SKIPPED_REPEATS] = skipped.get(SKIPPED_REPEATS, 0) + 1
                continue
            seen.add(uid)
            members.append((f, header))
        f, header = members[0]
        ref = header.referenced_series[0] if header.referenced_series else None
        hint = header.attribute(name_by) if name_by else None
        ids = dict(header.ids)
        if len(members) > 1:
            ids["SOPInstanceUID"] = [str(h.ids.get("SOPInstanceUID", "")) for _f, h in members]
        cases.append(
            Case(
                "dicom-seg",
                f.path,
                f.rel,
                tuple(m[0].path for m in members),
                tuple(sorted(images.get(ref, []))) if ref else (),
                ids,
                hint or ref,
                storage_options,
            )
        )
    return cases
