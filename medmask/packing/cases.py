"""Finding the cases of a collection (:mod:`.discover`) and naming their archives.

Naming rule (:func:`plan_outputs`), one archive ``DEST/<name>.mska`` per case:

1. a DICOM SEG series is named after the value of the ``name_by`` attribute in its header
   (``--name-by PatientID``...) when given and present, else after the SeriesInstanceUID of
   the image series it references (the name that joins it to its images);
2. any other case (and a SEG without either) is named after its path below the root, made
   safe: ``ROOT/s0001/segmentations`` -> ``s0001``, ``ROOT/site/s0001`` -> ``site__s0001``,
   ``ROOT/a/b.seg.nrrd`` -> ``a__b``;
3. when several cases get one name (two SEGs of one image series), each SEG among them
   becomes ``<name>__<its own SEG SeriesInstanceUID>``, so that none overwrites another
   and a re-run names each the same way again; names that still meet (paths that differ
   only in characters made safe: ``a b`` and ``a_b``) get ``-2``, ``-3`` ... in case order.
"""

from __future__ import annotations

import os
import posixpath
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..conversions.names import safe_filename
from ..io.names import is_url, split_suffix
from ..io.target import Target
from .discover import Case, discover

#: Longest archive name (file systems allow 255 bytes; two UIDs and ``__`` fit).
MAX_NAME = 200


# -- where things are -------------------------------------------------------------------------
def _join(base: str | os.PathLike, name: str) -> str | Path:
    if is_url(base):
        return f"{str(base).rstrip('/')}/{name}"
    return Path(base) / name


def find_cases(
    root: str | os.PathLike | Target,
    *,
    label_maps: bool = False,
    name_by: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> list[Case]:
    """The cases of a collection, of every kind ``pack`` reads (see :mod:`.discover`).

    Args:
        root: The collection's root, or one case: a local path, an fsspec URL
            (``s3://bucket/raw/``) or a :class:`~medmask.io.Target`.
        label_maps: NIfTI files are label maps (one case each) instead of folders of
            binary masks.
        name_by: A DICOM attribute naming each SEG's archive (see :func:`plan_outputs`).
        storage_options: fsspec options for a URL.

    Returns:
        The :class:`Case` objects, sorted by path below the root.

    Raises:
        FileNotFoundError: A local ``root`` that does not exist.
        RemoteReadError: A URL root that cannot be listed.
    """
    return discover(
        root, label_maps=label_maps, name_by=name_by, storage_options=storage_options
    ).cases


def _url_key(url: str) -> str:
    """A URL without its scheme and outer slashes, for comparing URL paths
    (``memory://x/a/`` and ``memory:///x/a`` are the same folder)."""
    return str(url).split("://", 1)[-1].strip("/")


def _path_name(root: str | os.PathLike, case: str | os.PathLike) -> str:
    """A folder case's name from its path below ``root`` (``segmentations`` left out)."""
    if is_url(root) or is_url(case):
        r, c = _url_key(str(root)), _url_key(str(case))
        if c == r:
            parts = c.split("/")
            parts = [parts[-2] if parts[-1] == "segmentations" and len(parts) > 1 else parts[-1]]
        else:
            rel = c[len(r) :].strip("/") if c.startswith(r) else posixpath.basename(c)
            parts = [p for p in rel.split("/") if p and p != "segmentations"] or [
                posixpath.basename(c)
            ]
        return "__".join(parts)
    root, case = Path(root), Path(case)
    if case == root:
        full = case.resolve()
        parts = [full.parent.name if full.name == "segmentations" else full.name]
    else:
        parts = [p for p in case.relative_to(root).parts if p != "segmentations"]
        parts = parts or [case.name]
    return "__".join(parts)


def _rel_name(case: Case) -> str:
    """A file case's name from its path below the root, without the format's suffix."""
    folder, _, name = case.rel.rpartition("/")
    parts = [*folder.split("/"), split_suffix(name)[0]]
    return "__".join(p for p in parts if p) or "case"


def case_name(root: str | os.PathLike, case: Case | str | os.PathLike) -> str:
    """The archive name (without ``.mska``) of a case, before collisions are settled
    (rules 1 and 2 of this module's naming rule), made safe.

    Args:
        root: The collection's root given to :func:`find_cases`.
        case: One of the cases it returned (or a case folder's path or URL).

    Returns:
        A safe file name (no separators, no ``..``; see
        :func:`medmask.conversions.names.safe_filename`).
    """
    if not isinstance(case, Case):
        return safe_filename(_path_name(root, case), max_len=MAX_NAME)
    if case.kind == "dicom-seg" and case.name_hint:
        return safe_filename(case.name_hint, max_len=MAX_NAME)
    if case.kind == "folder":
        return safe_filename(_path_name(root, case.source), max_len=MAX_NAME)
    return safe_filename(_rel_name(case), max_len=MAX_NAME)


def _own(case: Case | str | os.PathLike) -> str | None:
    """What tells a SEG from others of its name: its own SeriesInstanceUID."""
    if isinstance(case, Case) and case.kind == "dicom-seg":
        return case.ids.get("SegSeriesInstanceUID") or None
    return None


def plan_outputs(
    root: str | os.PathLike,
    dest: str | os.PathLike,
    cases: Sequence[Case | str | os.PathLike],
) -> list[tuple[Case | str | os.PathLike, str | Path]]:
    """Pair every case with its archive ``DEST/<name>.mska``, by this module's naming rule:
    no two cases ever write one archive.

    Args:
        root: The collection's root.
        dest: The output folder (path or URL).
        cases: From :func:`find_cases`.

    Returns:
        ``[(case, archive), ...]`` in case order.
    """
    names = [case_name(root, c) for c in cases]
    count = Counter(n.lower() for n in names)
    taken: set[str] = set()
    out = []
    for case, name in zip(cases, names, strict=True):
        own = _own(case) if count[name.lower()] > 1 else None
        if own:
            name = f"{name}__{own}"
        out.append((case, _join(dest, f"{safe_filename(name, taken, max_len=MAX_NAME)}.mska")))
    return out
