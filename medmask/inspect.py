"""Look inside medmask files without changing them: what they are, what they hold, whether
they are sound. The library behind ``medmask ls``, ``info`` and ``verify``.

Example::

    from medmask.inspect import file_info, list_masks, verify_file, expand_paths

    for f in expand_paths(["packed/"]):
        print(file_info(f)["space"]["spacing"], verify_file(f)["ok"])

Every function takes local paths, URLs (``s3://...``, with ``storage_options`` for
fsspec) or :class:`~medmask.io.Target` objects and returns plain JSON-serialisable values.
What a file can hold is asked of its layout (:mod:`medmask.format.layouts`), never of its
version number.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .bbox import bounding_box
from .errors import CorruptFileError, ForeignFileError, UnsupportedFormatError
from .format import Signature, read_msk_record, sniff_target, verify_all
from .io.names import is_url
from .io.target import Target
from .spaces import Space, describe_space
from .storage import MaskArchive

__all__ = [
    "MASK_SUFFIXES",
    "expand_paths",
    "sniff_file",
    "is_archive",
    "space_fields",
    "file_info",
    "list_masks",
    "verify_file",
]

#: File name endings of medmask files (folders are searched for these).
MASK_SUFFIXES = (".mska", ".msk")

PathArg = str | os.PathLike | Target


def expand_paths(
    paths: Iterable[PathArg], *, storage_options: Mapping[str, Any] | None = None
) -> list[str]:
    """Files and folders -> the medmask files they name, in the order given.

    A folder (or a URL ending in ``/``) stands for the ``.msk``/``.mska`` files below
    it, searched recursively and sorted; a file is kept whatever its name.

    Args:
        paths: Local paths or URLs.
        storage_options: fsspec options for URLs.

    Returns:
        Paths and URLs as strings.

    Raises:
        FileNotFoundError: A local path does not exist (nothing else is listed then).
    """
    out: list[str] = []
    for raw in paths:
        if is_url(raw):
            if str(raw).endswith("/"):
                from .io.remote import list_files

                out.extend(list_files(str(raw), MASK_SUFFIXES, storage_options=storage_options))
            else:
                out.append(str(raw))
            continue
        p = Path(raw)
        if p.is_dir():
            out.extend(
                str(f)
                for f in sorted(p.rglob("*"))
                if f.name.lower().endswith(MASK_SUFFIXES) and f.is_file()
            )
        elif p.exists():
            out.append(str(p))
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return out


def sniff_file(path: PathArg, *, storage_options: Mapping[str, Any] | None = None) -> Signature:
    """What a file is, by its first bytes (not its name): :func:`medmask.format.sniff_target`.

    Args:
        path: A local path, a URL or a :class:`~medmask.io.Target`.
        storage_options: fsspec options for a URL.

    Returns:
        ``(kind, major, minor)`` (a :class:`~medmask.format.Signature`, whose ``layout``
        says what the file can hold): kind ``"msk"`` or ``"mska"`` and the format version.

    Raises:
        ForeignFileError: A file of another format (NIfTI, NRRD, DICOM...).
        CorruptFileError: Too short, or not a medmask file.
        UnsupportedFormatError: A format version this release does not read.
        FileNotFoundError: No such file.
        IsADirectoryError: A folder.
    """
    target = Target.of(path, storage_options)
    if not target.is_url and Path(target.path).is_dir():
        raise IsADirectoryError(f"{path}: is a folder, not a .msk/.mska file")
    return sniff_target(target)


def is_archive(path: PathArg, *, storage_options: Mapping[str, Any] | None = None) -> bool:
    """Whether ``path`` is a medmask archive (``.mska``), by its first bytes (not its name).

    Args:
        path: A local path or URL.
        storage_options: fsspec options for a URL.

    Returns:
        ``True`` for an archive; ``False`` for a ``.msk`` or a file that is not a medmask
        file at all (too short, other magic).

    Raises:
        UnsupportedFormatError: A medmask file of a format version this release does not
            read (neither an archive nor a single mask can be opened).
        FileNotFoundError: No such file.
        IsADirectoryError: A folder.
    """
    try:
        return sniff_file(path, storage_options=storage_options)[0] == "mska"
    except UnsupportedFormatError:
        raise
    except (CorruptFileError, ForeignFileError):
        return False


def _floats(values: Iterable[float], nd: int = 6) -> list[float]:
    return [round(float(v), nd) for v in values]


def space_fields(space: Space) -> dict[str, Any]:
    """A ``(z, y, x)`` medmask space as structured, JSON-ready fields, in both conventions.

    NIfTI's, as nibabel and MONAI report a file (axes ``(x, y, z)``, world RAS):
    ``shape``, ``spacing``, ``origin`` (RAS mm of voxel ``(0, 0, 0)``: the affine's last
    column), ``direction`` (3x3; column ``j`` is the RAS unit vector of voxel axis ``j``,
    i.e. the affine's columns divided by the spacing) and ``affine_ras`` (4x4).

    medmask's own (axes ``(z, y, x)``, world LPS as in ITK/DICOM): ``shape_zyx``,
    ``spacing_zyx``, ``origin_lps`` and ``axes_zyx_lps`` (the LPS unit vector of each of
    the axes z, y, x).

    Args:
        space: The ``(z, y, x)`` space.

    Returns:
        The dict described above.
    """
    from .geometry import space_to_affine

    affine = space_to_affine(space)
    spacing_xyz = [float(v) for v in space.spacing[::-1]]
    direction = affine[:3, :3] / np.asarray(spacing_xyz)[None, :]
    return {
        "shape": [int(s) for s in space.shape[::-1]],
        "spacing": _floats(spacing_xyz),
        "origin": _floats(affine[:3, 3]),
        "direction": [_floats(row) for row in direction],
        "affine_ras": [_floats(row) for row in affine],
        "shape_zyx": [int(s) for s in space.shape],
        "spacing_zyx": _floats(space.spacing),
        "origin_lps": _floats(space.origin),
        "axes_zyx_lps": [
            _floats(space.x_orientation),
            _floats(space.y_orientation),
            _floats(space.z_orientation),
        ],
    }


def file_info(path: PathArg, *, storage_options: Mapping[str, Any] | None = None) -> dict:
    """Kind, format version, codec, space and sizes of a medmask file (no mask is decoded,
    except the one of a ``.msk``).

    Args:
        path: A ``.msk`` or ``.mska`` (told by its bytes), local, a URL or a Target.
        storage_options: fsspec options for a URL.

    Returns:
        A JSON-serialisable dict: ``file``, ``kind`` (``"msk"``/``"mska"``), ``version``
        (major), ``minor_version``, ``bytes``, ``masks``, ``codec`` (the codecs the file's
        masks use), ``space`` (see :func:`space_fields`; ``None`` for an archive without a
        mask yet), ``space_text`` (one line), and for archives ``empty_masks`` (``None``
        where the layout does not record voxel counts), ``mask_bytes``,
        ``overhead_bytes``, ``generation`` and ``index_segments`` (``None`` where the layout
        has no commits), ``full_volume_bytes_uint8``, ``layout`` (the layout's name, e.g.
        ``"2.3"``) and ``archive_attrs`` (the archive's own attributes, ``{}`` when none);
        for a ``.msk`` ``labels``, ``dtype``, ``bbox`` and ``voxels``.

    Raises:
        CorruptFileError: The file is damaged or not a medmask file.
        ForeignFileError: A file of another format (NIfTI, NRRD, DICOM...): the
            message says which, and how to convert it.
        UnsupportedFormatError: A format version this release does not read.
        FileNotFoundError: No such file.
    """
    target = Target.of(path, storage_options)
    sig = sniff_file(target)
    size = _size(target)
    out: dict[str, Any] = {
        "file": str(path),
        "kind": sig.kind,
        "version": int(sig.major),
        "minor_version": int(sig.minor),
        "bytes": int(size),
    }
    if sig.kind == "mska":
        out.update(_archive_facts(target, size))
    else:
        out.update(_msk_facts(target))
    return out


def _size(target: Target) -> int:
    if not target.is_url:
        return os.stat(target.path).st_size
    with target.open() as src:
        return src.size()


def _archive_facts(target: Target, size: int) -> dict[str, Any]:
    """The :func:`file_info` fields of an archive, from its index."""
    with MaskArchive(target) as ar:
        space = ar.space
        infos = ar.infos() if ar.layout.index_stats else None
        n = len(ar)
        return dict(
            masks=n,
            codec=",".join(ar.codec_names),
            space=None if space is None else space_fields(space),
            space_text=None if space is None else describe_space(space),
            empty_masks=None if infos is None else sum(1 for i in infos if i.bbox is None),
            mask_bytes=int(ar.mask_bytes),
            overhead_bytes=int(size) - int(ar.mask_bytes),
            generation=ar.generation,
            index_segments=ar.index_segments,
            full_volume_bytes_uint8=(0 if space is None else int(np.prod(space.shape))) * n,
            minor_version=int(ar.minor_version),  # a 2.2 file given archive attrs is 2.3
            layout=ar.layout.name,
            archive_attrs=dict(ar.archive_attrs),
        )


def _msk_facts(target: Target) -> dict[str, Any]:
    """The :func:`file_info` fields of a ``.msk`` (its bounding box is decoded)."""
    r = read_msk_record(target, cropped=True)
    return dict(
        masks=1,
        codec=r.codec,
        space=space_fields(r.space),
        space_text=describe_space(r.space),
        labels=r.mapping.to_dict(),
        dtype="bool" if r.array.dtype == np.bool_ else r.array.dtype.name,
        bbox=None if r.bbox is None else [int(v) for v in r.bbox],
        voxels=None if r.voxels is None else int(r.voxels),
    )


def list_masks(path: PathArg, *, storage_options: Mapping[str, Any] | None = None) -> list[dict]:
    """One row per mask of an archive (per label of a ``.msk``), from the index where it can.

    Archives whose layout stores voxel counts and boxes (``index_stats``) answer from
    their index alone; other archives and ``.msk`` files are decoded for them.

    Args:
        path: A ``.msk`` or ``.mska``, local, a URL or a Target.
        storage_options: fsspec options for a URL.

    Returns:
        ``[{"file", "name", "labels", "voxels", "bbox", "bytes", "attrs", "archive_attrs"}]``:
        ``labels`` the mask's ``{name: label}``, ``bbox`` half-open ``[z0, z1, y0, y1, x0,
        x1]`` in ``(z, y, x)`` voxel indices (``None`` when empty), ``bytes`` what the mask
        takes in the file (for a ``.msk``: the file's size), ``attrs`` its stored
        attributes, ``archive_attrs`` those of its archive (``{}`` when none).

    Raises:
        CorruptFileError: The file is damaged or not a medmask file.
        ForeignFileError: A file of another format (NIfTI, NRRD, DICOM...): the
            message says which, and how to convert it.
        FileNotFoundError: No such file.
    """
    target = Target.of(path, storage_options)
    if sniff_file(target).kind == "msk":
        return _msk_rows(target, str(path))
    rows: list[dict] = []
    with MaskArchive(target) as ar:
        archive_attrs = dict(ar.archive_attrs)
        for info in ar.infos():
            voxels, bbox = info.voxels, info.bbox
            if voxels is None:  # the layout does not record them: decode
                crop, bbox = ar.read_cropped(info.index)
                voxels = int(np.count_nonzero(crop))
            rows.append(
                {
                    "file": str(path),
                    "name": info.name,
                    "labels": dict(info.mapping),
                    "voxels": int(voxels),
                    "bbox": None if bbox is None else [int(v) for v in bbox],
                    "bytes": int(info.nbytes),
                    "attrs": dict(info.attrs),
                    "archive_attrs": archive_attrs,
                }
            )
    return rows


def _msk_rows(target: Target, file: str) -> list[dict]:
    """The :func:`list_masks` rows of a ``.msk``: one per label of its mapping."""
    size = _size(target)
    r = read_msk_record(target, cropped=True)
    rows = []
    for name, label in r.mapping.items():
        hit = r.array == label
        box = None if r.bbox is None else bounding_box(hit)
        if box is not None:  # from the crop's indices to the volume's
            box = tuple(int(v + r.bbox[2 * (k // 2)]) for k, v in enumerate(box))
        rows.append(
            {
                "file": file,
                "name": name,
                "labels": {name: int(label)},
                "voxels": int(np.count_nonzero(hit)),
                "bbox": None if box is None else list(box),
                "bytes": int(size),
                "attrs": dict(r.attrs),
                "archive_attrs": {},
            }
        )
    return rows


def verify_file(path: PathArg, *, storage_options: Mapping[str, Any] | None = None) -> dict:
    """Open ``path``, check every checksum and decode every mask; never raises for a bad file.

    Every check of :func:`medmask.format.verify_all` runs, so a damaged archive reports each
    bad mask, not only the first.

    Args:
        path: A ``.msk`` or ``.mska``, local, a URL or a Target.
        storage_options: fsspec options for a URL.

    Returns:
        ``{"file", "ok", "version", "masks", "checksums", "error", "problems"}``:
        ``checksums`` is False for layouts that carry none (their masks are decoded
        only); ``problems`` lists every problem as one line naming the file (and the mask or
        field where known); ``error`` is the first of them, or ``None``.
    """
    target = Target.of(path, storage_options)
    problems = [str(p) for p in verify_all(target)]
    out: dict = {
        "file": str(path),
        "ok": not problems,
        "version": None,
        "masks": None,
        "checksums": None,
        "error": problems[0] if problems else None,
        "problems": problems,
    }
    if problems:
        return out
    try:
        sig = sniff_file(target)
        if sig.kind == "mska":
            with MaskArchive(target) as ar:
                n = len(ar)
        else:
            n = 1
    except Exception as exc:  # noqa: BLE001 - the file changed since it was checked
        return {**out, "ok": False, "error": f"{path}: {exc}", "problems": [f"{path}: {exc}"]}
    out.update(version=int(sig.major), masks=n, checksums=sig.layout.checksums)
    return out
