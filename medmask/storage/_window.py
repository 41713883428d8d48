"""Windows of an archive and the one label-map painter.

:func:`paint_label_map` paints masks (or single labels of multi-label masks) of an archive
into one label map over a window of its grid, under one of the overlap rules of
:data:`medmask.ops.OVERLAP_RULES`, and reports what each lost to overlaps. Every label map
medmask makes goes through it: :meth:`MaskArchive.read_window`, ``LoadMask``'s label-map
mode (a window = the whole volume) and the NIfTI label-map export (``medmask unpack -o
X.nii.gz``, nnU-Net datasets).

Cost grows with the window and the masks it meets, not with the case: only masks whose
bounding box meets the window are read (their blobs together: one coalesced series of
range reads for a URL), each blob is checked and decompressed, and only the window's rows
(and, of a boolean mask, the bytes holding its columns) are unpacked
(:meth:`~medmask.format.backend.ArchiveBackend.iter_regions`; layouts without cropped
blobs decode whole volumes and slice them). A label table is resolved against the archive
once per handle (:class:`_Prepared`), so that a training loop's repeated windows pay only
for what they decode.
"""

from __future__ import annotations

import numbers
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..bbox import BBox, bbox_shape, full_bbox
from ..codecs import MAX_VOXELS
from ..errors import MaskValidationError
from ..labeltable import LabelTable
from ..ops import (
    OVERLAP_RULES,
    label_map_dtype,
    paint,
    paint_filled,
    paint_method,
    paint_order,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..format.backend import ArchiveBackend

__all__ = ["Layer", "Painted", "paint_label_map", "parse_window", "ArchiveWindows", "WINDOW_AS"]

#: What :meth:`MaskArchive.read_window` returns: one label map, a stack of channels (one
#: per distinct label), or ``{name: boolean window}``.
WINDOW_AS = ("label_map", "stack", "dict")
_AXES = "zyx"


@dataclass(frozen=True)
class Layer:
    """One label painted into a label map by :func:`paint_label_map`.

    Attributes:
        key: The name it is reported under (its name in the label table).
        mask: The stored mask it comes from.
        value: The label painted (a positive integer).
        stored: Only the voxels of this stored label of the mask (one label of a
            multi-label mask); ``None``: every non-zero voxel of the mask.
    """

    key: str
    mask: str
    value: int
    stored: int | None = None


@dataclass
class Painted:
    """What :func:`paint_label_map` painted.

    Attributes:
        array: The label map, of the window's shape (``(z, y, x)``).
        voxels: ``{key: voxels of the layer inside the window}`` (with ``report=True``).
        lost: ``{key: voxels it lost to overlaps}``, for the layers that lost some.
        overlap: The rule applied.
    """

    array: np.ndarray
    voxels: dict[str, int] = field(default_factory=dict)
    lost: dict[str, int] = field(default_factory=dict)
    overlap: str = "last"

    @property
    def emptied(self) -> list[str]:
        """The layers that had voxels in the window and lost all of them."""
        return [k for k, n in self.lost.items() if n == self.voxels[k]]


# -- windows -----------------------------------------------------------------------------------
def _bound(value: object, axis: str, window: object) -> int:
    if type(value) is int:  # the common case, checked fast (a window read per patch)
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise MaskValidationError(
            f"window bounds must be integers, got {value!r} on axis {axis} of {window!r}"
        )
    return int(value)


def _axis_range(item: object, axis: str, size: int, window: object) -> tuple[int, int]:
    if type(item) is tuple and len(item) == 2 and type(item[0]) is int and type(item[1]) is int:
        start, stop = item  # the common case, checked fast
    elif isinstance(item, slice):
        if item.step not in (None, 1):
            raise MaskValidationError(f"a window has no step; got {item!r} on axis {axis}")
        start = 0 if item.start is None else _bound(item.start, axis, window)
        stop = size if item.stop is None else _bound(item.stop, axis, window)
    elif isinstance(item, tuple | list | np.ndarray) and len(item) == 2:
        start, stop = (_bound(v, axis, window) for v in item)
    else:
        raise MaskValidationError(
            f"axis {axis} of the window must be a slice or a (start, stop) pair, got {item!r}"
        )
    if stop <= start:
        raise MaskValidationError(f"the window is empty along {axis} ({start}:{stop})")
    return start, stop


def parse_window(window: object, shape: Sequence[int]) -> BBox:
    """The box a window names, ``(z0, z1, y0, y1, x0, x1)`` (it may extend past the volume).

    Args:
        window: Three ``(start, stop)`` pairs or slices, ``(z, y, x)`` order, in voxel
            indices of the archive's grid. Bounds are absolute: a negative start lies
            before voxel 0 (not Python's "from the end"); a slice's missing bound is the
            volume's edge.
        shape: The volume's ``(z, y, x)`` shape.

    Raises:
        MaskValidationError: Not three axes, a step, non-integer bounds, an empty axis,
            or more voxels than any array medmask makes.
    """
    if isinstance(window, str | bytes | Mapping) or not hasattr(window, "__len__"):
        raise MaskValidationError(
            f"a window is three (start, stop) pairs or slices in (z, y, x) order, got {window!r}"
        )
    if len(window) != 3:
        hint = (
            "; a box (z0, z1, y0, y1, x0, x1) is written ((z0, z1), (y0, y1), (x0, x1))"
            if len(window) == 6
            else ""
        )
        raise MaskValidationError(
            f"a window has 3 axes (z, y, x), got {len(window)}: {window!r}{hint}"
        )
    box: list[int] = []
    for item, axis, size in zip(window, _AXES, shape, strict=True):
        box += _axis_range(item, axis, int(size), window)
    out: BBox = tuple(box)  # type: ignore[assignment]
    if (out[1] - out[0]) * (out[3] - out[2]) * (out[5] - out[4]) > MAX_VOXELS:
        raise MaskValidationError(f"the window {out} holds more than {MAX_VOXELS} voxels")
    return out


def _window_box(ar: Any, window: object) -> BBox:
    space = ar.space
    if space is None:
        raise MaskValidationError("the archive holds no mask yet (no grid)", path=ar.path)
    shape = tuple(int(s) for s in space.shape)
    return full_bbox(shape) if window is None else parse_window(window, shape)


def _where(region: np.ndarray, stored: int | None) -> np.ndarray:
    """The voxels of a decoded region a layer paints (a boolean array)."""
    if stored is not None:
        return region == stored
    return region if region.dtype == np.bool_ else region != 0


# -- a label table resolved against an archive ----------------------------------------------------
def _check_layers(layers: Sequence[Layer]) -> None:
    seen: set[str] = set()
    for ly in layers:
        if ly.key in seen:
            raise MaskValidationError(f"the layer name {ly.key!r} appears more than once")
        seen.add(ly.key)
        v = ly.value
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise MaskValidationError(f"label of {ly.key!r} must be a positive integer, got {v!r}")


class _Prepared:
    """Layers resolved against one state of an archive: each layer's entry and box (an
    ``(n, 6)`` array, so that finding what a window meets is a few vector operations), and
    the whole layers' sizes once a ``"smaller"`` rule asked for them.

    Raises:
        MaskNotFoundError: A layer's mask is not stored (close matches suggested).
    """

    def __init__(self, ar: Any, layers: Sequence[Layer]) -> None:
        _check_layers(layers)
        self.layers = list(layers)
        self.entries = [ar._entry(ly.mask)[1] for ly in self.layers]
        boxes = np.zeros((6, len(self.layers)), np.int64)  # an empty mask: an empty box
        for k, e in enumerate(self.entries):
            if e.bbox is not None:
                boxes[:, k] = e.bbox
        self.boxes = boxes
        self.top = max((ly.value for ly in self.layers), default=0)
        values = [ly.value for ly in self.layers]
        #: labels never decrease in table order (then neither in any part of it)
        self.increasing = all(a <= b for a, b in zip(values, values[1:], strict=False))
        self.default_dtype = label_map_dtype(None, self.top)
        self.sizes: list[int] | None = None

    def meeting(self, box: BBox) -> tuple[list[int], np.ndarray]:
        """``(positions, parts)`` of the layers whose box meets ``box``: the part of each
        inside it as ``(6, n)`` volume coordinates (``z0, z1, y0, y1, x0, x1`` rows)."""
        b = self.boxes
        part = np.empty_like(b)
        np.maximum(b[0::2], np.array(box[0::2])[:, None], out=part[0::2])
        np.minimum(b[1::2], np.array(box[1::2])[:, None], out=part[1::2])
        ok = (part[0] < part[1]) & (part[2] < part[3]) & (part[4] < part[5])
        hit = np.flatnonzero(ok)
        return hit.tolist(), part[:, hit]

    def whole_sizes(self, backend: ArchiveBackend) -> list[int]:
        """Voxels of each whole layer (``"smaller"`` compares whole masks, whatever the
        window): from the index, or by decoding masks whose rows do not say (a label of a
        multi-label mask, layouts without voxel counts)."""
        if self.sizes is not None:
            return self.sizes
        sizes: list[int | None] = []
        for ly, e in zip(self.layers, self.entries, strict=True):
            known = e.bbox is None or (ly.stored is None and e.voxels is not None)
            sizes.append((0 if e.bbox is None else int(e.voxels)) if known else None)
        todo = {ly.mask: e for ly, e, s in zip(self.layers, self.entries, sizes) if s is None}
        if todo:
            found = backend.iter_regions(list(todo.values()), [e.bbox for e in todo.values()])
            whole = dict(zip(todo, found, strict=True))
            for k, ly in enumerate(self.layers):
                if sizes[k] is None:
                    sizes[k] = int(np.count_nonzero(_where(whole[ly.mask], ly.stored)))
        self.sizes = sizes  # type: ignore[assignment]
        return self.sizes  # type: ignore[return-value]


def _prepared(ar: Any, key: object, make: Any) -> _Prepared:
    """The archive handle's prepared table for ``key`` (made by ``make()`` once per state
    of the archive: the handle clears its cache on every change)."""
    cache = ar.__dict__.setdefault("_prepared_tables", {})
    found = cache.get(key)
    if found is None:
        if len(cache) > 64:
            cache.clear()
        found = cache[key] = _Prepared(ar, make())
    return found


# -- painting ------------------------------------------------------------------------------------
def _regions(
    backend: ArchiveBackend,
    prep: _Prepared,
    order: list[int],
    parts: dict[int, BBox],
    fill_of: Callable[[int], int | None] | None = None,
) -> Iterator[tuple[int, np.ndarray, bool, bool]]:
    """``(layer position, decoded region, whether no later layer uses it, whether the
    region is filled)`` in paint ``order``; each mask is read once (a region is kept while
    later layers need it). ``fill_of(layer)`` asks for a boolean mask used by that layer
    alone as ``uint8`` bytes of a value (:meth:`~medmask.codecs.Codec.decode_region`)."""
    layers = prep.layers
    first: dict[str, int] = {}
    for i in order:
        first.setdefault(layers[i].mask, i)
    once = len(first) == len(order)  # no mask has two layers (the common case)
    uses = {m: 1 for m in first} if once else Counter(layers[i].mask for i in order)
    lead = list(first.values())
    fills = None
    if fill_of is not None:
        fills = [fill_of(i) if uses[layers[i].mask] == 1 else None for i in lead]
    filled = set() if fills is None else {layers[i].mask for i, f in zip(lead, fills) if f}
    found = backend.iter_regions([prep.entries[i] for i in lead], [parts[i] for i in lead], fills)
    cache: dict[str, np.ndarray] = {}
    for i in order:
        m = prep.layers[i].mask
        if m not in cache:
            cache[m] = next(found)  # masks come in order of first use
        region = cache[m]
        uses[m] -= 1
        if not uses[m]:
            del cache[m]
        yield i, region, not uses[m], m in filled


def _plan(
    ar: Any, prep: _Prepared, box: BBox, overlap: str
) -> tuple[list[int], dict[int, BBox], dict[int, tuple[slice, ...]]]:
    """Paint order of the layers meeting ``box``, the part of each inside it (volume
    coordinates) and where that part goes in the window's array."""
    if overlap not in OVERLAP_RULES:
        raise MaskValidationError(f"overlap must be one of {OVERLAP_RULES}, got {overlap!r}")
    hit, met = prep.meeting(box)
    parts: dict[int, BBox] = {}
    at: dict[int, tuple[slice, ...]] = {}
    z, y, x = box[0], box[2], box[4]
    for i, p in zip(hit, zip(*met.tolist(), strict=True), strict=True):
        parts[i] = p
        at[i] = (slice(p[0] - z, p[1] - z), slice(p[2] - y, p[3] - y), slice(p[4] - x, p[5] - x))
    if overlap == "last":
        order = list(parts)
    else:
        sizes = prep.whole_sizes(ar._backend) if overlap == "smaller" else None
        order = [i for i in paint_order(len(prep.layers), overlap, sizes) if i in parts]
    return order, parts, at


def _paint(
    ar: Any, prep: _Prepared, box: BBox, overlap: str, dtype: object, report: bool
) -> Painted:
    dt = prep.default_dtype if dtype is None else label_map_dtype(dtype, prep.top)
    out = np.zeros(bbox_shape(box), dt)
    order, parts, at = _plan(ar, prep, box, overlap)
    layers = prep.layers
    if overlap == "last" and prep.increasing and dt == np.uint8:
        method = "max"  # any part of an increasing table increases
    else:
        method = paint_method(dt, [layers[i].value for i in order])
    fill_of = None
    if not report and method != "copy" and out.dtype == np.uint8:

        def fill_of(i: int) -> int | None:  # a plain boolean mask: unpacked as its label
            plain = layers[i].stored is None and prep.entries[i].dtype == np.bool_
            return (layers[i].value if method == "max" else 255) if plain else None

    painted = []
    for i, region, last, filled in _regions(ar._backend, prep, order, parts, fill_of):
        if filled:
            paint_filled(out[at[i]], region, layers[i].value, method)
            continue
        where = _where(region, layers[i].stored)
        scratch = not report and (last or where is not region)  # nothing reads it again
        paint(out[at[i]], where, layers[i].value, method, scratch=scratch and where.flags.writeable)
        if report:
            painted.append((i, where))
    result = Painted(out, overlap=overlap)
    if report:
        result.voxels = {ly.key: 0 for ly in layers}
        for i, where in painted:
            ly, n = layers[i], int(np.count_nonzero(where))
            kept = int(np.count_nonzero(out[at[i]][where] == ly.value)) if n else 0
            result.voxels[ly.key] = n
            if kept < n:
                result.lost[ly.key] = n - kept
    return result


def paint_label_map(
    archive: Any,
    layers: Sequence[Layer],
    *,
    window: object = None,
    overlap: str = "last",
    dtype: object = None,
    report: bool = False,
) -> Painted:
    """Paint masks of an archive into one label map: the one label-map painter.

    A later layer wins an overlap (``"last"``, the default and ``LoadMask``'s rule), or an
    earlier one (``"first"``), or the one of fewer voxels in the whole volume
    (``"smaller"``; equal sizes: the later). Layers that share a label are a merge.
    Painting is exact for any labels (``numpy.maximum`` when the labels never decrease in
    paint order, else an xor blend or ``copyto``: :func:`medmask.ops.paint_method`).

    Args:
        archive: An open :class:`~medmask.MaskArchive`.
        layers: What to paint, in table order (:class:`Layer`).
        window: ``None`` for the whole volume, else a window as
            :meth:`MaskArchive.read_window` takes it (it may run past the volume: zeros).
        overlap: One of :data:`medmask.ops.OVERLAP_RULES`.
        dtype: The label map's dtype (:func:`medmask.ops.label_map_dtype`; default the
            smallest of ``uint8``, ``int16``, ``int32``, ``int64`` that holds the labels).
        report: Count each layer's voxels (inside the window) and what it lost to
            overlaps (one more pass over each painted region).

    Returns:
        A :class:`Painted`.

    Raises:
        MaskNotFoundError: A layer's mask is not in the archive (close matches suggested).
        MaskValidationError: A bad window, rule, dtype or layer, or an archive without
            a grid yet.
        CorruptFileError: A blob met is damaged (naming the file and mask).
    """
    archive._check_open()
    box = _window_box(archive, window)
    prep = _Prepared(archive, layers)
    return _paint(archive, prep, box, overlap, dtype, report)


def _table_key(names: object) -> object:
    """A hashable key of a ``names`` argument (``TypeError`` when it has none)."""
    if names is None or isinstance(names, LabelTable):
        return names
    if isinstance(names, Mapping):
        return ("map", tuple(names.items()))
    if isinstance(names, list | tuple):
        return ("list", tuple(names))
    raise TypeError


# -- MaskArchive.read_window ---------------------------------------------------------------------
class ArchiveWindows:
    """Mixin of :class:`~medmask.MaskArchive` with :meth:`read_window`."""

    def _window_table(self, names: object) -> _Prepared:
        def make() -> list[Layer]:
            table = LabelTable(self.all_names() if names is None else names)  # type: ignore[attr-defined]
            return [Layer(n, n, v) for n, v in table.items()]

        try:
            key = _table_key(names)
            hash(key)
        except TypeError:  # an unhashable or unusual names argument: not cached
            return _Prepared(self, make())
        return _prepared(self, key, make)

    def read_window(
        self,
        window: object,
        names: Sequence[str] | Mapping[str, int] | LabelTable | None = None,
        as_: str = "label_map",
        *,
        overlap: str = "last",
        dtype: object = None,
    ) -> np.ndarray | dict[str, np.ndarray]:
        """The masks inside a box of the archive's grid, without reading the whole case.

        Only masks whose bounding box meets the window are read and decoded, and of each
        only the window's rows (and, of a boolean mask, the bytes holding its columns) are
        unpacked; a remote archive reads their blobs in one coalesced series of ranged
        requests. The window may run past the volume: what lies outside it is 0 (False),
        and the result always has the window's shape.

        Args:
            window: ``(z, y, x)``: three ``(start, stop)`` pairs or slices (no step) in
                voxel indices of the archive's grid, e.g. ``((10, 106), (0, 96),
                slice(40, 136))``. Bounds are absolute (a negative start lies before
                voxel 0; a slice's missing bound is the volume's edge).
            names: Which masks, as ``LoadMask`` takes them: ``None`` every mask
                (labels 1..N in archive order), a list of names (labels 1..N in list
                order), or ``{name: label}`` / a :class:`~medmask.labeltable.LabelTable`
                (several names may share a label: a merge). A name is a stored mask:
                all its non-zero voxels.
            as_: ``"label_map"``: one ``(z, y, x)`` array of labels with ``LoadMask``'s
                label-map semantics (a later name wins an overlap, unless ``overlap``
                says otherwise; default dtype the smallest of ``uint8``, ``int16``,
                ``int32``, ``int64`` holding the largest label); ``"stack"``: a
                ``(C, z, y, x)`` array, one channel per distinct label in increasing
                order (``LoadMask``'s channels: overlaps kept); ``"dict"``: ``{name:
                boolean (z, y, x) window}``.
            overlap: Label maps: ``"last"``, ``"first"`` or ``"smaller"``
                (:data:`medmask.ops.OVERLAP_RULES`).
            dtype: The output dtype (a label map's must hold its largest label; a
                stack's and a dict's default is ``bool``).

        Returns:
            The array, or the dict of arrays.

        Raises:
            MaskValidationError: A window that is not three non-empty (start, stop)
                ranges, a bad ``names``, ``as_``, ``overlap`` or ``dtype``, or an archive
                without a grid yet.
            MaskNotFoundError: A name is not in the archive (close matches suggested).
            CorruptFileError: A blob the window meets is damaged (naming file and mask).

        Example:
            >>> with MaskArchive("case.mska") as ar:                      # doctest: +SKIP
            ...     patch = ar.read_window(((40, 136), (50, 146), (60, 156)))
            ...     organs = ar.read_window((slice(0, 64),) * 3, ["liver", "spleen"], "dict")
        """
        self._check_open()  # type: ignore[attr-defined]
        if as_ not in WINDOW_AS:
            raise MaskValidationError(f"as_ must be one of {WINDOW_AS}, got {as_!r}")
        box = _window_box(self, window)
        prep = self._window_table(names)
        if as_ == "label_map":
            return _paint(self, prep, box, overlap, dtype, False).array
        if overlap not in OVERLAP_RULES:
            raise MaskValidationError(f"overlap must be one of {OVERLAP_RULES}, got {overlap!r}")
        return _channels(self, prep, box, as_, np.dtype(bool if dtype is None else dtype))


def _channels(ar: Any, prep: _Prepared, box: BBox, as_: str, dtype: np.dtype) -> Any:
    """The ``"stack"`` or ``"dict"`` form of a window (overlaps kept)."""
    shape = bbox_shape(box)
    layers = prep.layers
    if as_ == "dict":
        targets = {ly.key: np.zeros(shape, dtype) for ly in layers}
        result: Any = targets
    else:
        labels = sorted({ly.value for ly in layers})
        result = np.zeros((len(labels), *shape), dtype)
        targets = {lab: result[k] for k, lab in enumerate(labels)}
    order, parts, at = _plan(ar, prep, box, "last")
    for i, region, _last, _filled in _regions(ar._backend, prep, order, parts):
        ly = layers[i]
        target = targets[ly.key if as_ == "dict" else ly.value][at[i]]
        np.copyto(target, 1, where=_where(region, ly.stored), casting="unsafe")
    return result
