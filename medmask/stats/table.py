"""The tables: the per-mask table built from the parts read, the per-name summary and
the cases lacking a mask."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import MaskValidationError
from ..io.names import split_suffix
from .rows import Grid, Part

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["MASK_COLUMNS", "SUMMARY_COLUMNS", "frame", "summarize", "lacking"]

#: The columns every per-mask table has (attribute columns come after ``empty``, then the
#: archive attributes as ``archive_<key>``).
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


def _pd():
    try:
        import pandas
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("medmask.stats needs pandas: pip install 'medmask[stats]'") from None
    return pandas


def frame(pd: Any, parts: list[Part], *, files: list[str], failed: list) -> pd.DataFrame:
    """The table of all parts: the rows as read, then the derived columns (volume, RAS
    centroid, border contact) computed once over every row (each row indexes its grid).

    Args:
        pd: The pandas module.
        parts: The rows of each file read.
        files: The files read (``df.attrs["files"]``).
        failed: ``(path, message)`` of the files skipped (``df.attrs["failed"]``).
    """
    cols, grids = _concat(parts)
    data: dict[str, Any] = {"case": cols["case"], "name": cols["name"], "voxels": cols["voxels"]}
    data.update(_derived(cols, grids))
    attrs = cols["attrs"]
    for k in dict.fromkeys(k for a in attrs if a for k in a):
        data[k if k not in MASK_COLUMNS else f"attr_{k}"] = [
            tuple(v) if isinstance(v, list) else v for v in (a.get(k) if a else None for a in attrs)
        ]
    for k in dict.fromkeys(k for p in parts for k in p.archive_attrs):
        data[f"archive_{k}"] = [  # the archive's own attributes, repeated on its rows
            _cell(p.archive_attrs.get(k)) for p in parts for _ in range(len(p.names))
        ]
    data.update(
        labels=cols["labels"], source=cols["source"], format=cols["format"], path=cols["path"]
    )
    df = pd.DataFrame(data)
    df["voxels"] = df["voxels"].astype("int64")
    df["volume_ml"] = df["volume_ml"].astype("float64")
    df["touches_border"] = df["touches_border"].astype(bool)
    df["empty"] = df["empty"].astype(bool)
    df.attrs["files"] = list(files)
    df.attrs["failed"] = list(failed)
    df.attrs["decoded"] = int(sum(src == "decoded" for src in cols["source"]))
    return df


def _cell(value: object) -> object:
    """A table cell of an attribute: lists as tuples (hashable, like per-mask attributes)."""
    return tuple(value) if isinstance(value, list) else value


def _concat(parts: list[Part]) -> tuple[dict[str, list], list[Grid]]:
    """The parts' columns end to end, with ``grid`` (each row's index into the grids)."""
    grid_index: dict[int, int] = {}
    grids: list[Grid] = []
    keys = ("grid", "case", "format", "path", "name", "voxels", "bbox", "centroid", "attrs")
    cols: dict[str, list] = {k: [] for k in (*keys, "labels", "source")}
    for part in parts:
        k = grid_index.setdefault(id(part.grid), len(grids))
        if k == len(grids):
            grids.append(part.grid)
        n = len(part.names)
        cols["grid"] += [k] * n
        cols["case"] += [part.case] * n
        cols["format"] += [part.fmt] * n
        cols["path"] += [part.path] * n
        cols["name"] += part.names
        cols["voxels"] += part.voxels
        cols["bbox"] += part.bboxes
        cols["centroid"] += part.centroids
        cols["attrs"] += part.attrs
        cols["labels"] += part.labels
        cols["source"] += part.sources
    return cols, grids


def _derived(cols: dict[str, list], grids: list[Grid]) -> dict[str, list]:
    """``volume_ml``, ``bbox``, ``centroid_ras_mm``, ``touches_border`` and ``empty``,
    vectorised over every row."""
    n = len(cols["name"])
    g = np.asarray(cols["grid"], dtype=np.intp)
    shapes = np.array([gr.shape for gr in grids], dtype=np.int64).reshape(-1, 3)
    steps = np.array([gr.steps for gr in grids], dtype=np.float64).reshape(-1, 3, 3)
    origins = np.array([gr.origin for gr in grids], dtype=np.float64).reshape(-1, 3)
    voxel_ml = np.array([gr.voxel_ml for gr in grids], dtype=np.float64)
    vox = np.asarray(cols["voxels"], dtype=np.int64)
    full = vox > 0
    box = np.array(
        [b if b is not None else (1, 0, 1, 0, 1, 0) for b in cols["bbox"]], dtype=np.int64
    ).reshape(n, 6)
    touches = full & ((box[:, 0::2] == 0) | (box[:, 1::2] == shapes[g])).any(axis=1)
    cen = np.array(
        [c if c is not None else (0.0, 0.0, 0.0) for c in cols["centroid"]], dtype=np.float64
    ).reshape(n, 3)
    ras = (np.einsum("nij,nj->ni", steps[g], cen) + origins[g]).tolist()
    return {
        "volume_ml": (vox * voxel_ml[g]).tolist(),
        "bbox": cols["bbox"],
        "centroid_ras_mm": [
            tuple(r) if f else None for r, f in zip(ras, full.tolist(), strict=True)
        ],
        "touches_border": touches.tolist(),
        "empty": (~full).tolist(),
    }


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
