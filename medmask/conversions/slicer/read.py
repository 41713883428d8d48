"""Reading a Slicer ``.seg.nrrd`` into mask records; see :mod:`medmask.conversions.slicer`."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ...errors import MaskValidationError
from ...geometry import lps_to_space
from ...spaces import Space
from ..common import MAX_SEGMENTS, MAX_VOXELS, MaskRecord
from ..names import unique_names
from .base import NRRD_SPACES, _nrrd, field_error
from .terminology import parse_terminology

__all__ = ["read_seg_nrrd", "seg_nrrd_jobs"]

_LAYERED_KINDS = (["list", "domain", "domain", "domain"], ["vector", "domain", "domain", "domain"])


def read_seg_nrrd(
    path: str | os.PathLike,
) -> tuple[Space, list[MaskRecord], dict[str, str]]:
    """Read a Slicer ``.seg.nrrd`` as mask records.

    Args:
        path: The file (3-D or 4-D layered).

    Returns:
        ``(space, records, renamed)``: the ``(z, y, x)`` LPS space, one whole-grid record
        per segment in file order (empty segments included), and ``{new name: name in the
        file}`` for duplicate or empty names made unique (``name (2)``, ...).

    Raises:
        MaskValidationError: See :func:`seg_nrrd_jobs`.
    """
    space, jobs, renamed = seg_nrrd_jobs(path)
    shape = tuple(int(s) for s in space.shape)
    records = []
    for job in jobs:
        rec = job()
        records.append(MaskRecord(rec.name, rec.full(shape), rec.attrs))
    return space, records, renamed


def seg_nrrd_jobs(
    path: str | os.PathLike,
) -> tuple[Space, list[Callable[[], MaskRecord]], dict[str, str]]:
    """Read a Slicer ``.seg.nrrd``: its voxels, and one job per segment that cuts the
    segment out (only inside its ``Extent`` when that holds all of it: a boxed record).
    The jobs are independent (safe on several threads).

    Args:
        path: The file (3-D or 4-D layered).

    Returns:
        ``(space, jobs, renamed)``: the ``(z, y, x)`` LPS space, one job per segment in
        file order (empty segments included), and ``{new name: name in the file}``.

    Raises:
        MaskValidationError: Not an NRRD, unknown ``space`` or ``kinds``, bad or missing
            geometry, a header declaring more than :data:`~medmask.conversions.common.MAX_VOXELS`
            voxels, a segment whose ``Layer``/``LabelValue`` is out of range, or data that
            does not match the header.
    """
    nrrd = _nrrd()
    path = Path(path)
    with open(path, "rb") as fh:
        try:
            header = nrrd.read_header(fh)
        except Exception as exc:  # noqa: BLE001 - pynrrd raises its own and ValueError
            raise MaskValidationError(f"{path}: not a readable NRRD header ({exc})") from None
        layered, sizes = _layout(path, header)
        m = _geometry(path, header, layered)
        segs = _segments(path, header)
        try:
            data = nrrd.read_data(header, fh, str(path), index_order="C")
        except Exception as exc:  # noqa: BLE001
            raise MaskValidationError(
                f"{path}: cannot read the voxel data ({type(exc).__name__}: {exc})"
            ) from None
    data = _layers(path, data, layered, sizes)
    nx, ny, nz = sizes[-3:]
    space = lps_to_space(m, (nx, ny, nz))
    names, changed = unique_names([f.get("Name", "") for f in segs])
    renamed = {names[k]: old for k, old in changed.items()}
    counts = [_value_counts(data[..., k]) for k in range(data.shape[3])]
    jobs = [
        _segment_job(path, data, k, name, f, layered, counts)
        for k, (name, f) in enumerate(zip(names, segs, strict=True))
    ]
    return space, jobs, renamed


def _value_counts(lab: np.ndarray) -> np.ndarray:
    """Voxels of each value of one layer (one bincount, shared by its segments)."""
    if not lab.size:
        return np.zeros(1, np.int64)
    return np.bincount(lab.ravel().astype(np.int64, copy=False))


def _layout(path: object, header: dict) -> tuple[bool, list[int]]:
    """``(layered, sizes)`` from the header's ``kinds``, ``dimension`` and ``sizes``.

    Raises:
        MaskValidationError: Not a 3-D segmentation or a 4-D stack of them, bad sizes, or
            more than :data:`~medmask.conversions.common.MAX_VOXELS` voxels.
    """
    kinds = [str(k).lower() for k in header.get("kinds", [])]
    dim = int(header.get("dimension", 0))
    sizes = [int(s) for s in np.atleast_1d(header.get("sizes", []))]
    if kinds == ["domain"] * 3 and dim == 3:
        layered = False
    elif kinds in _LAYERED_KINDS and dim == 4:
        layered = True
    else:
        raise field_error(
            path,
            "kinds",
            f"{' '.join(kinds) or 'missing'} (dimension {dim}); a Slicer segmentation has "
            "'domain domain domain' or 'list domain domain domain'",
        )
    if len(sizes) != dim or any(s <= 0 for s in sizes):
        raise field_error(path, "sizes", f"{sizes} for dimension {dim}")
    total = int(np.prod(np.asarray(sizes, dtype=object)))
    if total > MAX_VOXELS:
        raise field_error(
            path, "sizes", f"{sizes} is {total:,} voxels (limit {MAX_VOXELS:,}); refused"
        )
    return layered, sizes


def _layers(path: object, data: np.ndarray, layered: bool, sizes: list[int]) -> np.ndarray:
    """The voxel data as ``(z, y, x, layer)`` labels, checked.

    Raises:
        MaskValidationError: Float or negative voxels, or a shape that is not the header's.
    """
    if data.dtype.kind not in "uib":
        raise field_error(path, "type", f"{data.dtype} voxels; a segmentation holds integer labels")
    if data.dtype.kind == "i" and data.size and int(data.min()) < 0:
        raise field_error(
            path, "type", f"negative voxel values (min {int(data.min())}); labels are >= 0"
        )
    if not layered:
        data = data[..., None]
    nx, ny, nz = sizes[-3:]
    if data.shape[:3] != (nz, ny, nx):
        raise MaskValidationError(f"{path}: data shape {data.shape} does not match sizes {sizes}")
    return data


def _segment_job(
    path: object,
    data: np.ndarray,
    k: int,
    name: str,
    f: dict[str, str],
    layered: bool,
    counts: list[np.ndarray],
) -> Callable[[], MaskRecord]:
    """The job that cuts segment ``k`` (fields ``f``) out of ``(z, y, x, layer)`` data.

    Raises:
        MaskValidationError: Its ``Layer`` or ``LabelValue`` is not an integer, or its layer
            is not in the file.
    """
    n_layers = data.shape[3]
    key = f"Segment{k}_"
    # files of Slicer <= 4.10 have neither Layer nor LabelValue: one segment per
    # layer (4-D) with voxel value 1
    legacy = "Layer" not in f and "LabelValue" not in f
    default_layer = str(k) if legacy and layered else "0"
    layer = _ints(path, key + "Layer", f.get("Layer", default_layer), 1)[0]
    if not 0 <= layer < n_layers:
        raise field_error(path, key + "Layer", f"{layer} but the file has {n_layers} layer(s)")
    value = _ints(path, key + "LabelValue", f.get("LabelValue", "1"), 1)[0]
    attrs = _segment_attrs(f, value)

    def build() -> MaskRecord:
        lab = data[..., layer]
        if value <= 0:
            return MaskRecord(name, np.zeros((0, 0, 0), bool), attrs, origin=(0, 0, 0))
        box, origin = _segment_voxels(lab, value, f.get("Extent"), counts[layer])
        return MaskRecord(name, box, attrs, origin=origin)

    return build


def _geometry(path: object, header: dict, layered: bool) -> np.ndarray:
    space = str(header.get("space", "")).strip().lower()
    if space not in NRRD_SPACES:
        raise field_error(
            path,
            "space",
            f"{header.get('space')!r} is not a patient space medmask knows "
            f"({', '.join(k for k in NRRD_SPACES if len(k) > 3)}); re-save it in LPS or RAS",
        )
    flip = np.asarray(NRRD_SPACES[space])
    dirs = np.asarray(header.get("space directions"), dtype=np.float64)
    if dirs.ndim != 2 or dirs.shape[1] != 3:
        raise field_error(path, "space directions", "missing or not three-vector per axis")
    if layered:
        dirs = dirs[1:]
    if dirs.shape[0] != 3 or not np.all(np.isfinite(dirs)):
        raise field_error(path, "space directions", "needs one finite vector per spatial axis")
    origin = np.asarray(header.get("space origin", [0.0, 0.0, 0.0]), dtype=np.float64)
    if origin.shape != (3,) or not np.all(np.isfinite(origin)):
        raise field_error(path, "space origin", "needs three finite numbers")
    m = np.eye(4)
    m[:3, :3] = (dirs * flip).T  # column k: the world step of array axis k
    m[:3, 3] = origin * flip
    return m


def _segments(path: object, header: dict) -> list[dict]:
    fields: dict[int, dict[str, str]] = {}
    for key, value in header.items():
        if not key.startswith("Segment") or key.startswith("Segmentation"):
            continue
        num, _, name = key[len("Segment") :].partition("_")
        if not num.isdigit() or not name:
            continue
        if int(num) >= MAX_SEGMENTS:
            raise field_error(path, key, f"more than {MAX_SEGMENTS} segments")
        fields.setdefault(int(num), {})[name] = str(value)
    return [fields[k] for k in sorted(fields)]


def _ints(path: object, key: str, text: str, n: int) -> list[int]:
    try:
        vals = [int(float(v)) for v in text.split()]
    except ValueError:
        vals = []
    if len(vals) != n:
        raise field_error(path, key, f"expected {n} integers, got {text!r}")
    return vals


def _segment_voxels(
    lab: np.ndarray, value: int, extent: str | None, counts: np.ndarray
) -> tuple[np.ndarray, tuple[int, int, int] | None]:
    """``lab == value``: only inside the segment's Extent when the Extent holds every
    voxel of that value (checked against the layer's value counts), as ``(box, origin)``;
    else on the whole grid, ``(array, None)``."""
    total = int(counts[value]) if value < counts.size else 0
    if total == 0:
        return np.zeros((0, 0, 0), bool), (0, 0, 0)
    box = _extent_box(extent, lab.shape)
    if box is not None:
        sub = lab[box] == value
        if int(np.count_nonzero(sub)) == total:
            return sub, (box[0].start, box[1].start, box[2].start)
    return lab == value, None


def _extent_box(extent: str | None, shape: tuple[int, ...]) -> tuple[slice, slice, slice] | None:
    """The slices of a segment's ``Extent`` (``x0 x1 y0 y1 z0 z1``, inclusive) on the
    grid, or ``None`` when it is missing or unusable."""
    if not extent:
        return None
    try:
        e = [int(float(v)) for v in extent.split()]
    except ValueError:
        return None
    if len(e) != 6 or e[0] > e[1] or e[2] > e[3] or e[4] > e[5]:
        return None
    nz, ny, nx = shape
    x0, x1 = max(0, e[0]), min(nx - 1, e[1])
    y0, y1 = max(0, e[2]), min(ny - 1, e[3])
    z0, z1 = max(0, e[4]), min(nz - 1, e[5])
    if x0 > x1 or y0 > y1 or z0 > z1:
        return None
    return slice(z0, z1 + 1), slice(y0, y1 + 1), slice(x0, x1 + 1)


def _segment_attrs(f: dict[str, str], value: int) -> dict:
    attrs: dict = {"label_value": int(value)}
    color = f.get("Color", "").split()
    try:
        rgb = [float(c) for c in color]
    except ValueError:
        rgb = []
    if len(rgb) == 3 and all(0.0 <= c <= 1.0 for c in rgb):
        attrs["color"] = [round(c * 255) for c in rgb]
    slicer: dict = {}
    if f.get("ID"):
        slicer["id"] = f["ID"]
    tags: dict[str, str] = {}
    for item in f.get("Tags", "").split("|"):
        if not item:
            continue
        k, _, v = item.partition(":")
        if k == "TerminologyEntry":
            coded, contexts = parse_terminology(v)
            attrs.update(coded)
            slicer.update({k2: v2 for k2, v2 in contexts.items() if v2})
        else:
            tags[k] = v
    if tags:
        slicer["tags"] = tags
    if slicer:
        attrs["slicer"] = slicer
    return attrs
