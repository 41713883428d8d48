"""Finding the cases of a dataset (local folders or URLs) and naming their archives."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..conversions.names import NIFTI_SUFFIXES, safe_filename
from ..conversions.nifti.cases import holds_masks, mask_folders
from ..io.names import is_url
from ..io.target import Target


# -- where things are -------------------------------------------------------------------------
def _join(base: str | os.PathLike, name: str) -> str | Path:
    if is_url(base):
        return f"{str(base).rstrip('/')}/{name}"
    return Path(base) / name


def find_cases(
    root: str | os.PathLike | Target, *, storage_options: Mapping[str, Any] | None = None
) -> list[Path] | list[str]:
    """The case folders of a dataset.

    A case is a folder that directly holds NIfTI masks (a folder of images only, named as
    images such as nnU-Net's ``imagesTr/case_0000.nii.gz``, is not one). In TotalSegmentator's layout
    (``CASE/ct.nii.gz`` + ``CASE/segmentations/<organ>.nii.gz``) the ``segmentations``
    folder is the case and the image beside it is not a mask. A ``root`` that directly holds
    masks is one case. Hidden folders and files are skipped.

    Args:
        root: The dataset root, or one case folder: a local path, an fsspec URL
            (``s3://bucket/raw/``) or a :class:`~medmask.io.Target`.
        storage_options: fsspec options for a URL.

    Returns:
        The case folders, sorted: :class:`~pathlib.Path` objects for a local root, URLs for
        a URL root.

    Raises:
        FileNotFoundError: A local ``root`` that does not exist.
        RemoteReadError: A URL root that cannot be listed.
    """
    t = Target.of(root, storage_options)
    if t.is_url:
        return _find_url_cases(t)
    return mask_folders(t.path)


def _url_key(url: str) -> str:
    """A URL without its scheme and outer slashes, for comparing URL paths
    (``memory://x/a/`` and ``memory:///x/a`` are the same folder)."""
    return str(url).split("://", 1)[-1].strip("/")


def _find_url_cases(root: Target) -> list[str]:
    from ..io.remote import list_files

    root_key = _url_key(root.path)
    files = list_files(root.path, NIFTI_SUFFIXES, storage_options=root.storage_options)
    folders: dict[str, list[str]] = {}
    for url in files:
        folder, name = url.rsplit("/", 1)
        rel = _url_key(folder)[len(root_key) :].strip("/")
        if name.startswith(".") or any(p.startswith(".") for p in rel.split("/") if p):
            continue
        folders.setdefault(folder, []).append(url)
    with_segmentations = {f.rsplit("/", 1)[0] for f in folders if f.endswith("/segmentations")}
    return sorted(
        f
        for f, urls in folders.items()
        if f not in with_segmentations and holds_masks([u.rsplit("/", 1)[1] for u in urls])
    )


def case_name(root: str | os.PathLike, case: str | os.PathLike) -> str:
    """The archive name (without ``.mska``) of a case: its path below ``root``, made safe.

    ``ROOT/s0001/segmentations`` -> ``s0001``; ``ROOT/site/s0001`` -> ``site__s0001``;
    a root that is itself a case is named after its folder (or the folder above a
    ``segmentations`` folder). Works on URLs the same way.

    Args:
        root: The dataset root given to :func:`find_cases`.
        case: One of the cases it returned.

    Returns:
        A safe file name (no separators, no ``..``; see
        :func:`medmask.conversions.names.safe_filename`).
    """
    if is_url(root) or is_url(case):
        r, c = _url_key(root), _url_key(case)
        if c == r:
            parts = c.split("/")
            parts = [parts[-2] if parts[-1] == "segmentations" and len(parts) > 1 else parts[-1]]
        else:
            rel = c[len(r) :].strip("/") if c.startswith(r) else posixpath.basename(c)
            parts = [p for p in rel.split("/") if p and p != "segmentations"] or [
                posixpath.basename(c)
            ]
        return safe_filename("__".join(parts))
    root, case = Path(root), Path(case)
    if case == root:
        full = case.resolve()
        parts = [full.parent.name if full.name == "segmentations" else full.name]
    else:
        parts = [p for p in case.relative_to(root).parts if p != "segmentations"]
        parts = parts or [case.name]
    return safe_filename("__".join(parts))


def plan_outputs(
    root: str | os.PathLike, dest: str | os.PathLike, cases: Sequence[str | os.PathLike]
) -> list[tuple[str | Path, str | Path]]:
    """Pair every case with its archive: ``DEST/<case name>.mska``.

    Names that collide once made safe (``a b`` and ``a_b``) get ``-2``, ``-3`` ... suffixes,
    in case order, so that two cases never write the same archive.

    Args:
        root: The dataset root.
        dest: The output folder (path or URL).
        cases: From :func:`find_cases`.

    Returns:
        ``[(case, archive), ...]`` in case order.
    """
    taken: set[str] = set()
    return [(c, _join(dest, f"{safe_filename(case_name(root, c), taken)}.mska")) for c in cases]
