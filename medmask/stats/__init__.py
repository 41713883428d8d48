"""Statistics of a mask dataset, from the archives' index (pandas; the ``stats`` extra).

``medmask.stats(paths)`` describes every mask of a dataset in one :class:`pandas.DataFrame`
without decoding a voxel where the files allow it: a version-2 archive stores each mask's
voxel count and bounding box in its index, and formats 2.2 (written by this release) and
2.1 (medmask 0.3.0) its centroid and attributes too. What an older file lacks is computed by decoding, and the ``source`` column
says so for each row:

==========================  ==========================================================
file                        where the figures come from
==========================  ==========================================================
``.mska`` format 2.2, 2.1   the index alone (``source == "index"``)
``.mska`` format 2.0        voxels and box from the index; the centroid of each
(medmask 0.2.0)             non-empty mask by decoding its bounding box (``"decoded"``)
``.mska`` version 1         every mask decoded in full (``"decoded"``): version 1 has
(medmask 0.1.x)             no per-mask statistics; ``medmask convert`` upgrades it
``.msk`` (any version)      the file's bounding box decoded (``"decoded"``)
==========================  ==========================================================

The module is a little over 600 lines on purpose: the per-mask table, the per-name summary
and the three ways a row is filled (index, 2.0 centroids, decoding) share one row layout,
documented here once.

Columns of the per-mask table, one row per mask:

* ``case``: the file's stem (``s0000.mska`` -> ``s0000``); for a ``.msk`` file, the name
  of its folder (a case stored as one ``.msk`` per organ).
* ``name``: the mask's name (for a ``.msk``, the file's stem).
* ``voxels``: number of non-zero voxels; ``volume_ml``: voxels x voxel volume / 1000.
* ``bbox``: half-open voxel box ``(z0, z1, y0, y1, x0, x1)`` in medmask's ``(z, y, x)``
  array order (NIfTI ``i, j, k`` are ``x, y, z``); ``None`` when empty.
* ``centroid_ras_mm``: the centre of mass in world RAS millimetres, as nibabel
  (``img.affine @ mean ijk``) and MONAI report coordinates; ``None`` when empty.
* ``touches_border``: the mask reaches a face of the image grid (it may be cut off).
* ``empty``: no voxel is set.
* the mask's stored attributes, one column per attribute key present in the dataset
  (``color``, ``description``, ``label_value``, coded concepts; see :mod:`medmask.attrs`).
* ``labels`` (the ``{name: label}`` mapping), ``source`` (``"index"`` or ``"decoded"``),
  ``format`` (``"2.2"``, ``"2.1"``, ``"2.0"``, ``"1"``) and ``path``.

:func:`summarize` gives one row per mask name across the dataset, and :func:`lacking` the
cases without a given organ (for building cohorts).

The module is callable: ``medmask.stats(paths)`` is :func:`stats`.

Example:
    >>> import medmask                                                       # doctest: +SKIP
    >>> df = medmask.stats("packed/")                                        # doctest: +SKIP
    >>> medmask.stats.summarize(df)                                          # doctest: +SKIP
    >>> df[(df.name == "liver") & ~df.empty & ~df.touches_border].case.tolist()  # doctest: +SKIP
"""

from __future__ import annotations

import gc
import math
import os
import sys
import types
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import MaskValidationError, MedMaskError
from .io.names import is_url, split_suffix

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .spaces import Space

__all__ = ["stats", "summarize", "lacking", "find_mask_files", "MASK_COLUMNS", "SUMMARY_COLUMNS"]

#: The columns every per-mask table has (attribute columns come after ``empty``).
MASK_COLUMNS = (
    "case",
    "name",
    "voxels",
    "volume_ml",
    "bbox",
    "centroid_ras_mm",
    "touches_border",
    "empty",
    "labels",
    "source",
    "format",
    "path",
)
#: The columns of :func:`summarize`.
SUMMARY_COLUMNS = (
    "name",
    "cases",
    "present",
    "empty",
    "missing",
    "touching_border",
    "volume_ml_min",
    "volume_ml_median",
    "volume_ml_max",
    "lacking",
)
_SUFFIXES = (".mska", ".msk")
PathArg = str | os.PathLike


def _pd():
    try:
        import pandas
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("medmask.stats needs pandas: pip install 'medmask[stats]'") from None
    return pandas


# -- finding files ---------------------------------------------------------------------------
def _list_url(url: str, storage_options: dict | None) -> list[str]:
    try:
        from .io.remote import list_files
    except ImportError:  # pragma: no cover - a build without remote support
        raise MaskValidationError(
            f"{url}: this medmask build reads local files only; copy the files locally"
        ) from None
    return list_files(url, _SUFFIXES, storage_options=storage_options)


def find_mask_files(
    paths: PathArg | Sequence[PathArg], *, storage_options: dict | None = None
) -> list[str]:
    """The ``.mska``/``.msk`` files named by ``paths``, folders expanded recursively.

    Args:
        paths: Files, folders and URLs (``s3://bucket/prefix/`` expands like a folder,
            through fsspec), one or a sequence.
        storage_options: fsspec options for URLs.

    Returns:
        Paths and URLs, folders' contents sorted, in the order given, without duplicates.

    Raises:
        FileNotFoundError: A local path that does not exist.
        RemoteReadError: A URL prefix could not be listed.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    out: list[str] = []
    seen: set[str] = set()

    def keep(p: str) -> None:
        if p not in seen:
            seen.add(p)
            out.append(p)

    for p in paths:
        s = os.fspath(p)
        if is_url(s):
            if s.lower().endswith(_SUFFIXES):
                keep(s)
            else:  # a "folder" (prefix): the objects below it
                for f in _list_url(s, storage_options):
                    keep(f)
            continue
        path = Path(s)
        if path.is_dir():
            for f in sorted(path.rglob("*")):
                if (
                    f.name.lower().endswith(_SUFFIXES)
                    and not f.name.startswith(".")
                    and f.is_file()
                ):
                    keep(str(f))
        elif path.is_file():
            keep(str(path))
        else:
            raise FileNotFoundError(f"{s}: no such file or folder")
    return out


# -- geometry ---------------------------------------------------------------------------------
_RAS = np.array([-1.0, -1.0, 1.0])  # medmask spaces are LPS; RAS flips the first two axes


class _Grid:
    """What the rows of one file need from its ``(z, y, x)`` space.

    ``steps[:, k]`` is the RAS step of array axis ``k`` (z, y, x) and ``origin`` the RAS centre
    of voxel 0, so that ``steps @ (z, y, x) + origin`` is what nibabel computes as
    ``img.affine @ (i, j, k, 1)`` with ``(i, j, k) = (x, y, z)``.
    """

    def __init__(self, space: Space) -> None:
        self.shape = np.array([int(v) for v in space.shape], dtype=np.int64)
        spacing = np.asarray(space.spacing, dtype=np.float64)
        dirs = np.column_stack(
            [space.x_orientation, space.y_orientation, space.z_orientation]
        ).astype(np.float64)  # the (z, y, x) space's "x" axis is array axis 0, and so on
        self.steps = _RAS[:, None] * (dirs * spacing)
        self.origin = _RAS * np.asarray(space.origin, dtype=np.float64)
        self.voxel_ml = float(abs(np.prod(spacing))) / 1000.0


_GRIDS: dict[tuple, _Grid] = {}


def _grid(space: Space) -> _Grid:
    """The (cached) :class:`_Grid` of a space: datasets mostly share a few grids."""
    key = tuple(
        tuple(float(v) for v in getattr(space, f))
        for f in ("shape", "spacing", "origin", "x_orientation", "y_orientation", "z_orientation")
    )
    grid = _GRIDS.get(key)
    if grid is None:
        if len(_GRIDS) > 1024:
            _GRIDS.clear()
        grid = _GRIDS[key] = _Grid(space)
    return grid


class _Part:
    """The rows of one file, column by column (figures as read, derived columns later)."""

    def __init__(self, grid: _Grid, case: str, fmt: str, path: str) -> None:
        self.grid, self.case, self.fmt, self.path = grid, case, fmt, path
        self.names: list[str] = []
        self.voxels: list[int] = []
        self.bboxes: list[tuple | None] = []
        self.centroids: list[Sequence[float] | None] = []
        self.attrs: list[dict | None] = []
        self.labels: list[dict] = []
        self.sources: list[str] = []

    def add(self, name, voxels, bbox, centroid, attrs, labels, source) -> None:
        self.names.append(name)
        self.voxels.append(int(voxels))
        self.bboxes.append(None if bbox is None or not voxels else tuple(int(b) for b in bbox))
        self.centroids.append(centroid if voxels else None)
        self.attrs.append(attrs or None)  # most masks have none: no dict kept per row
        self.labels.append(labels)
        self.sources.append(source)


# -- reading one file -------------------------------------------------------------------------
def _archive_part(path: str, storage_options: dict | None) -> _Part | None:
    """The rows of one archive: from :meth:`MaskArchive.infos` (the index alone), decoding
    only masks whose row lacks a figure (version 1, format 2.0)."""
    from .attrs import centroid_of
    from .storage import MaskArchive

    with MaskArchive(path, storage_options=storage_options) as ar:
        space = ar.space
        if space is None:  # an archive created without a mask or a space
            return None
        fmt = "1" if ar.version == 1 else f"{ar.version}.{ar.minor_version}"
        part = _Part(_grid(space), split_suffix(path)[0], fmt, path)
        for info in ar.infos():
            voxels, bbox, centroid, source = info.voxels, info.bbox, info.centroid, "index"
            if voxels is None or (voxels > 0 and (bbox is None or centroid is None)):
                crop, bbox = ar.read_cropped(info.index)
                origin = (0, 0, 0) if bbox is None else (bbox[0], bbox[2], bbox[4])
                voxels, centroid = centroid_of(crop, origin)
                source = "decoded"
            part.add(info.name, voxels, bbox, centroid, info.attrs, info.mapping, source)
    return part


def _msk_part(path: str, storage_options: dict | None) -> _Part:
    from .attrs import centroid_of
    from .format import read_msk_record

    if is_url(path):
        r = read_msk_record(path, cropped=True, storage_options=storage_options)
        folder = path.split("?", 1)[0].rstrip("/").rsplit("/", 2)[-2]
    else:
        r = read_msk_record(path, cropped=True)
        folder = Path(path).resolve().parent.name
    origin = (0, 0, 0) if r.bbox is None else (r.bbox[0], r.bbox[2], r.bbox[4])
    voxels, centroid = centroid_of(r.array, origin)
    if r.centroid is not None:
        centroid = r.centroid
    fmt = "1" if r.version == 1 else f"{r.version}.{getattr(r, 'minor', 0)}"
    part = _Part(_grid(r.space), folder, fmt, path)
    part.add(
        split_suffix(path)[0],
        voxels,
        r.bbox,
        centroid,
        dict(getattr(r, "attrs", None) or {}),
        r.mapping.to_dict(),
        "decoded",
    )
    return part


def _file_part(path: str, storage_options: dict | None) -> _Part | None:
    """The rows of one file. A URL is taken by its name (no extra request: a reader opening
    an object whose bytes contradict its name refuses it); a local file is opened as an
    archive, the common case, and read as a ``.msk`` when its first bytes say it is not one
    (so an archive is opened once)."""
    if is_url(path):
        if split_suffix(path)[1].lower() == ".msk":
            return _msk_part(path, storage_options)
        return _archive_part(path, storage_options)
    from .errors import CorruptFileError
    from .inspect import is_archive

    try:
        return _archive_part(path, storage_options)
    except CorruptFileError:
        if is_archive(path):
            raise  # a damaged archive
        return _msk_part(path, storage_options)


def _wrap_progress(
    progress: bool | Callable[[Iterable], Iterable] | None, total: int
) -> Callable[[Iterable], Iterable]:
    if callable(progress):
        return progress
    show = progress if progress is not None else (total > 20 and sys.stderr.isatty())
    if not show:
        return lambda it: it
    try:
        from tqdm import tqdm
    except ImportError:  # the ``cli`` extra is optional
        return lambda it: it
    return lambda it: tqdm(it, total=total, desc="stats", unit="file", leave=False)


# -- the table --------------------------------------------------------------------------------
def stats(
    paths: PathArg | Sequence[PathArg],
    *,
    storage_options: dict | None = None,
    progress: bool | Callable[[Iterable], Iterable] | None = None,
    on_error: str = "raise",
) -> pd.DataFrame:
    """One row per mask of every ``.mska``/``.msk`` file under ``paths``.

    Version-2 archives answer from their index; what a file's index lacks (centroids of
    medmask 0.2.0 archives, everything for version-1 files) is computed by decoding, and the
    row's ``source`` column says ``"decoded"``. See the module docstring for the columns.

    Args:
        paths: Files, folders (searched recursively) and URLs (``s3://bucket/prefix/``
            folders expand through fsspec), one or a sequence.
        storage_options: fsspec options for URLs (endpoint, credentials).
        progress: ``True`` for a progress bar, ``False`` for none, a wrapper such as
            ``tqdm.tqdm``, or ``None`` (default): a bar on a terminal for more than 20 files.
        on_error: ``"raise"`` (default): an unreadable file raises; ``"skip"``: it is left
            out with a warning, and listed as ``(path, message)`` in ``df.attrs["failed"]``.

    Returns:
        A :class:`pandas.DataFrame`; ``df.attrs`` holds ``files`` (the files read),
        ``failed`` and ``decoded`` (how many rows needed decoding).

    Raises:
        FileNotFoundError: A path that does not exist.
        CorruptFileError: A damaged file (message names file and mask); not with ``"skip"``.
        MaskValidationError: A URL this build cannot read; a bad ``on_error``.
        ImportError: pandas is not installed.
    """
    if on_error not in ("raise", "skip"):
        raise MaskValidationError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    pd = _pd()
    files = find_mask_files(paths, storage_options=storage_options)
    parts: list[_Part] = []
    failed: list[tuple[str, str]] = []
    paused = _CollectorPaused()
    try:
        for k, f in enumerate(_wrap_progress(progress, len(files))(files)):
            if k % _GC_BATCH == 0:
                paused.new_batch()
            try:
                part = _file_part(f, storage_options)
                if part is not None:
                    parts.append(part)
            except (MedMaskError, OSError, ValueError) as exc:
                if on_error == "raise":
                    raise
                text = str(exc).strip()
                msg = text.splitlines()[0] if text else type(exc).__name__
                if f not in msg:
                    msg = f"{f}: {msg}"
                warnings.warn(f"medmask.stats: skipped {msg}", RuntimeWarning, stacklevel=2)
                failed.append((f, msg))
    finally:
        paused.end()
    return _frame(
        pd, parts, files=[f for f in files if f not in {x for x, _ in failed}], failed=failed
    )


#: Files read with Python's cyclic garbage collector paused (see :func:`_collector_paused`).
_GC_BATCH = 256


class _CollectorPaused:
    """Python's cyclic garbage collector paused while files are read, batch by batch
    (reference counting still frees everything at once).

    Reading an index creates about ten small containers per mask, none of them in a cycle,
    and most live until the table is built; each counts towards the collector's
    thresholds, which then re-scan every object of the process again and again (in a
    process holding pandas and nibabel, a fifth of the time of ``stats``). The collector is
    re-enabled between batches of :data:`_GC_BATCH` files (so garbage that other code makes
    meanwhile waits at most one batch) and at the end, as it was found.
    """

    def __init__(self) -> None:
        self._was = gc.isenabled()

    def new_batch(self) -> None:
        """Collect the objects made since the last batch once (young generation only),
        then pause the collector again."""
        if self._was:
            gc.enable()
            gc.collect(0)  # the young objects of the batch, scanned once
            gc.disable()

    def end(self) -> None:
        """Restore the collector as it was found."""
        if self._was:
            gc.enable()


def _frame(pd, parts: list[_Part], *, files: list[str], failed: list) -> pd.DataFrame:
    """The table of all parts: the rows as read, then the derived columns (volume, RAS
    centroid, border contact) computed once over every row (each row indexes its grid)."""
    grid_of: dict[int, int] = {}
    grids: list[_Grid] = []
    gix: list[int] = []
    cols: dict[str, list] = {c: [] for c in ("case", "format", "path")}
    names: list[str] = []
    voxels: list[int] = []
    bboxes: list = []
    centroids: list = []
    attrs: list[dict | None] = []
    labels: list[dict] = []
    sources: list[str] = []
    for part in parts:
        k = grid_of.setdefault(id(part.grid), len(grids))
        if k == len(grids):
            grids.append(part.grid)
        n = len(part.names)
        gix += [k] * n
        cols["case"] += [part.case] * n
        cols["format"] += [part.fmt] * n
        cols["path"] += [part.path] * n
        names += part.names
        voxels += part.voxels
        bboxes += part.bboxes
        centroids += part.centroids
        attrs += part.attrs
        labels += part.labels
        sources += part.sources
    n = len(names)
    g = np.asarray(gix, dtype=np.intp)
    shapes = np.array([gr.shape for gr in grids], dtype=np.int64).reshape(-1, 3)
    steps = np.array([gr.steps for gr in grids], dtype=np.float64).reshape(-1, 3, 3)
    origins = np.array([gr.origin for gr in grids], dtype=np.float64).reshape(-1, 3)
    voxel_ml = np.array([gr.voxel_ml for gr in grids], dtype=np.float64)
    vox = np.asarray(voxels, dtype=np.int64)
    full = vox > 0
    box = np.array(
        [b if b is not None else (1, 0, 1, 0, 1, 0) for b in bboxes], dtype=np.int64
    ).reshape(n, 6)
    touches = full & ((box[:, 0::2] == 0) | (box[:, 1::2] == shapes[g])).any(axis=1)
    cen = np.array(
        [c if c is not None else (0.0, 0.0, 0.0) for c in centroids], dtype=np.float64
    ).reshape(n, 3)
    ras = (np.einsum("nij,nj->ni", steps[g], cen) + origins[g]).tolist()
    attr_keys = list(dict.fromkeys(k for a in attrs if a for k in a))
    data: dict[str, Any] = {
        "case": cols["case"],
        "name": names,
        "voxels": voxels,
        "volume_ml": (vox * voxel_ml[g]).tolist(),
        "bbox": bboxes,
        "centroid_ras_mm": [
            tuple(r) if f else None for r, f in zip(ras, full.tolist(), strict=True)
        ],
        "touches_border": touches.tolist(),
        "empty": (~full).tolist(),
    }
    for k in attr_keys:
        data[k if k not in MASK_COLUMNS else f"attr_{k}"] = [
            tuple(v) if isinstance(v, list) else v for v in (a.get(k) if a else None for a in attrs)
        ]
    data.update(labels=labels, source=sources, format=cols["format"], path=cols["path"])
    df = pd.DataFrame(data)
    df["voxels"] = df["voxels"].astype("int64")
    df["volume_ml"] = df["volume_ml"].astype("float64")
    df["touches_border"] = df["touches_border"].astype(bool)
    df["empty"] = df["empty"].astype(bool)
    df.attrs["files"] = list(files)
    df.attrs["failed"] = list(failed)
    df.attrs["decoded"] = int(sum(src == "decoded" for src in sources))
    return df


def _case_keys(df: pd.DataFrame) -> tuple[list[str], dict[str, str]]:
    """All files of the table (``df.attrs["files"]`` plus paths in rows) and how to call each
    one: its case name, or its path where two files share a case name."""
    files = list(dict.fromkeys([*df.attrs.get("files", []), *df["path"].tolist()]))
    case_of = dict(zip(df["path"], df["case"], strict=False))
    for f in files:
        case_of.setdefault(f, split_suffix(f)[0])
    counts: dict[str, int] = {}
    for f in files:
        counts[case_of[f]] = counts.get(case_of[f], 0) + 1
    return files, {f: case_of[f] if counts[case_of[f]] == 1 else f for f in files}


def lacking(df: pd.DataFrame, name: str, *, empty_is_missing: bool = True) -> list[str]:
    """The cases that lack the mask ``name``: not stored, or (by default) stored empty.

    Args:
        df: A table from :func:`stats`.
        name: The mask name (``"liver"``).
        empty_is_missing: Count a stored but empty mask as lacking (default ``True``).

    Returns:
        Case names, sorted (a file's path instead where two files share a case name).

    Raises:
        MaskValidationError: ``df`` is not a table from :func:`stats`.
    """
    _check_table(df)
    files, key = _case_keys(df)
    rows = df[df["name"] == name]
    if empty_is_missing:
        rows = rows[~rows["empty"]]
    have = set(rows["path"])
    return sorted(key[f] for f in files if f not in have)


def _check_table(df: object) -> None:
    missing = [
        c
        for c in ("case", "name", "voxels", "empty", "path")
        if c not in getattr(df, "columns", ())
    ]
    if missing:
        raise MaskValidationError(
            f"expected a table from medmask.stats(); it lacks the columns {missing}"
        )


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """One row per mask name across the dataset of a :func:`stats` table.

    Columns: ``name``; ``cases`` (files storing the name), ``present`` (of those, non-empty),
    ``empty``, ``missing`` (files not storing it), ``touching_border`` (non-empty masks that
    reach the grid's border); ``volume_ml_min``/``_median``/``_max`` over the non-empty
    masks (NaN when none); ``lacking``: the cases without it or with it empty (sorted).

    Args:
        df: A table from :func:`stats` (its ``attrs["files"]`` also counts files that
            hold no mask at all).

    Returns:
        A :class:`pandas.DataFrame` sorted by name.

    Raises:
        MaskValidationError: ``df`` is not a table from :func:`stats`.
    """
    _check_table(df)
    pd = _pd()
    files, key = _case_keys(df)
    out = []
    for name, g in df.groupby("name", sort=True):
        full = g[~g["empty"]]
        vols = full["volume_ml"].to_numpy(dtype=np.float64)
        have = set(full["path"])
        out.append(
            {
                "name": name,
                "cases": int(g["path"].nunique()),
                "present": int(full["path"].nunique()),
                "empty": int(g["empty"].sum()),
                "missing": len(files) - int(g["path"].nunique()),
                "touching_border": int(full["touches_border"].sum()),
                "volume_ml_min": float(vols.min()) if vols.size else math.nan,
                "volume_ml_median": float(np.median(vols)) if vols.size else math.nan,
                "volume_ml_max": float(vols.max()) if vols.size else math.nan,
                "lacking": sorted(key[f] for f in files if f not in have),
            }
        )
    return pd.DataFrame.from_records(out, columns=list(SUMMARY_COLUMNS))


class _CallableModule(types.ModuleType):
    """``medmask.stats`` is this module and also the function :func:`stats`."""

    def __call__(self, *args: Any, **kwargs: Any) -> pd.DataFrame:
        return stats(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
