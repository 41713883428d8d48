"""Writing mask records as a Slicer ``.seg.nrrd``; see :mod:`medmask.conversions.slicer`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import MaskValidationError
from ...geometry import lps_matrix
from ...io.atomic import write_atomic
from ...io.names import expect_name
from ...ops import smallest_uint_dtype
from ...spaces import Space
from ..common import MaskRecord
from ..labels import default_color
from .base import _nrrd
from .terminology import terminology_string

__all__ = ["write_seg_nrrd"]


def write_seg_nrrd(
    records: Iterable[MaskRecord],
    space: Space,
    out: str | os.PathLike,
    *,
    compression_level: int = 1,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> dict[str, tuple[int, int]]:
    """Write masks as a Slicer ``.seg.nrrd`` (atomically).

    Overlapping masks go into separate layers (a 4-D file); without overlaps the file is
    3-D. Label values come from the masks' ``label_value`` attribute where it is free in
    the layer, else the next free value; colours, terminology, segment IDs and other
    Slicer tags are written from the attributes (a fixed palette and no terminology
    where there are none).

    Args:
        records: The masks (bool ``(z, y, x)`` arrays on ``space``).
        space: Their grid.
        out: The ``.seg.nrrd`` to write.
        compression_level: gzip level (1 fast ... 9 small).
        progress: Optional wrapper of the record iterable.

    Returns:
        ``{name: (layer, label value)}``.

    Raises:
        MaskValidationError: The name of ``out`` is not ``.seg.nrrd``, or no masks.
    """
    nrrd = _nrrd()
    expect_name(out, "seg.nrrd", what="Slicer segmentation")
    stack = _Layers(tuple(int(s) for s in space.shape))
    for k, rec in enumerate(progress(records) if progress else records):
        stack.place(k, rec)
    if not stack.segments:
        raise MaskValidationError(f"{out}: no masks to write")
    data, kinds = stack.data()
    header = _geometry_fields(space, data, kinds)
    ids: set[str] = set()
    for j, segment in enumerate(stack.segments):
        header.update(_segment_fields(j, segment, ids))

    def write(fh) -> None:
        nrrd.write(fh, data, header, index_order="C", compression_level=compression_level)

    write_atomic(Path(out), write)
    return stack.placed


@dataclass
class _Segment:
    """What the header says of one mask (no arrays kept)."""

    name: str
    attrs: dict
    layer: int
    value: int
    extent: list[int]
    k: int


@dataclass
class _Layers:
    """Label layers being filled: each mask goes into the first layer where it overlaps
    nothing, with its ``label_value`` where that is free there."""

    shape: tuple[int, ...]
    layers: list[np.ndarray] = field(default_factory=list)  # (z, y, x) uint16 labels
    used: list[set[int]] = field(default_factory=list)  # label values taken per layer
    placed: dict[str, tuple[int, int]] = field(default_factory=dict)
    segments: list[_Segment] = field(default_factory=list)

    def place(self, k: int, rec: MaskRecord) -> None:
        """Paint the ``k``-th mask into a layer.

        Raises:
            MaskValidationError: Its array is not on the grid.
        """
        arr = rec.array if rec.array.dtype == np.bool_ else rec.array != 0
        if arr.shape != self.shape:
            raise MaskValidationError(
                f"mask {rec.name!r}: shape {arr.shape} is not the grid {self.shape}"
            )
        ext = _bbox_xyz(arr)
        box = (slice(ext[4], ext[5] + 1), slice(ext[2], ext[3] + 1), slice(ext[0], ext[1] + 1))
        crop = arr[box]
        layer = next((i for i, lab in enumerate(self.layers) if not np.any(lab[box][crop])), None)
        if layer is None:
            self.layers.append(np.zeros(self.shape, np.uint16))
            self.used.append(set())
            layer = len(self.layers) - 1
        value = self._value(layer, rec.attrs.get("label_value"))
        view = self.layers[layer][box]
        view[crop] = value
        self.placed[rec.name] = (layer, value)
        self.segments.append(_Segment(rec.name, rec.attrs, layer, value, ext, k))

    def _value(self, layer: int, want: object) -> int:
        """``want`` when it is a free label value in ``layer``, else the lowest free one."""
        taken = self.used[layer]
        if isinstance(want, int) and 0 < want < 65536 and want not in taken:
            value = want
        else:
            value = 1
            while value in taken:
                value += 1
        taken.add(value)
        return value

    def data(self) -> tuple[np.ndarray, list[str]]:
        """``(voxel data, NRRD kinds)``: 3-D for one layer, else layers last (4-D)."""
        top = max(max(u) for u in self.used)
        dtype = smallest_uint_dtype(top)
        if len(self.layers) == 1:
            return self.layers[0].astype(dtype), ["domain", "domain", "domain"]
        data = np.stack([lab.astype(dtype) for lab in self.layers], axis=-1)
        return data, ["list", "domain", "domain", "domain"]


def _bbox_xyz(arr: np.ndarray) -> list[int]:
    if not arr.any():
        return [0, -1, 0, -1, 0, -1]
    out = []
    for axis in (2, 1, 0):  # x, y, z of a (z, y, x) array
        other = tuple(a for a in range(3) if a != axis)
        nz = np.flatnonzero(arr.any(axis=other))
        out += [int(nz[0]), int(nz[-1])]
    return out


def _geometry_fields(space: Space, data: np.ndarray, kinds: list[str]) -> dict:
    """The header fields of the whole file: type, dimension, LPS geometry, encoding."""
    m = lps_matrix(space)
    dirs = m[:3, :3].T  # one row per array axis (x, y, z)
    if data.ndim == 4:
        dirs = np.vstack([[np.nan, np.nan, np.nan], dirs])
    return {
        "type": "unsigned char" if data.dtype == np.uint8 else "unsigned short",
        "dimension": data.ndim,
        "space": "left-posterior-superior",
        "kinds": kinds,
        "space directions": dirs,
        "space origin": m[:3, 3],
        "encoding": "gzip",
        "Segmentation_MasterRepresentation": "Binary labelmap",
        "Segmentation_ContainedRepresentationNames": "Binary labelmap|",
        "Segmentation_ReferenceImageExtentOffset": "0 0 0",
    }


def _segment_fields(j: int, seg: _Segment, ids: set[str]) -> dict[str, str]:
    """The ``Segment<j>_*`` header fields of one segment (``ids``: IDs already used)."""
    a = seg.attrs
    slicer = a.get("slicer") if isinstance(a.get("slicer"), dict) else {}
    sid = str(slicer.get("id") or f"Segment_{seg.k + 1}")
    while sid in ids:
        sid += "_"
    ids.add(sid)
    color = a.get("color") if isinstance(a.get("color"), list) else default_color(seg.k)
    tags = dict(slicer.get("tags") or {})
    tags.setdefault("Segmentation.Status", "inprogress")
    term = terminology_string(a)
    tag_text = "".join(
        f"{t}:{' '.join(str(v).splitlines())}|" for t, v in tags.items() if t != "TerminologyEntry"
    )
    if term:
        tag_text += f"TerminologyEntry:{term}|"
    p = f"Segment{j}_"
    return {
        p + "Color": " ".join(f"{max(0, min(255, int(c))) / 255:.6g}" for c in color[:3]),
        p + "ColorAutoGenerated": "0" if isinstance(a.get("color"), list) else "1",
        p + "Extent": " ".join(map(str, seg.extent)),
        p + "ID": sid,
        p + "LabelValue": str(seg.value),
        p + "Layer": str(seg.layer),
        p + "Name": " ".join(seg.name.splitlines()),
        p + "NameAutoGenerated": "0",
        p + "Tags": tag_text,
    }
