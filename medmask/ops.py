"""Array operations on label maps: fast selection of voxels by label value.

:func:`match_allowed_values` answers "which voxels carry one of these labels?" and
picks its strategy per call (figures and tuning in ``benchmarks/bench_match.py``):

* empty set (after dropping values the dtype cannot hold) -> all False; a set that
  covers the whole dtype -> all True; one value -> a single ``==``.
* otherwise, the cheaper of two strategies by a cost model (:data:`COMPARE_NS` ...),
  fed with the number of runs of consecutive values in the set and with the share
  of voxels inside the set's window ``[lo, hi]``, estimated from a strided sample of
  :data:`SAMPLE_SIZE` voxels (label maps are mostly background, often outside it):

  - one compare per run, OR-ed: ``==`` for a lone value, and
    ``(a - lo) <= (hi - lo)`` on the unsigned view for a run (one subtraction and
    one compare, exact thanks to the wrap-around); cost grows with the runs;
  - a lookup table indexed by the offset ``a - lo``: one compare settles the voxels
    outside the window; the table is read for the others, by a gather over the whole
    block when many voxels of that block fall inside, or by index over just those
    voxels when few do. 8-bit arrays read the table two voxels at a time (a
    65,536-entry table of voxel pairs), which halves the gathers. Cost does not
    grow with the runs.

* 32/64-bit arrays whose set spans more than :data:`MAX_TABLE_SPAN` values (or
  more than the array's size) and has many runs -> binary search of the runs
  (``numpy.searchsorted``), never a huge table.

Everything runs over blocks of :data:`BLOCK_BYTES` of input so that temporaries stay
in cache and no full-size temporary is allocated besides the result.

:func:`smallest_int_dtype` (and :func:`smallest_uint_dtype`) is the one "smallest dtype
that holds these values" rule, used wherever label maps are made (:func:`label_map_dtype`).

Painting masks into one label map (:data:`OVERLAP_RULES`, :func:`paint_order`,
:func:`paint_method`, :func:`paint`) is the arithmetic of the one label-map painter,
:func:`medmask.storage.paint_label_map`.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable

import numpy as np

from .errors import MaskValidationError

__all__ = [
    "match_allowed_values",
    "smallest_int_dtype",
    "smallest_uint_dtype",
    "value_runs",
    "OVERLAP_RULES",
    "paint_order",
    "paint_method",
    "paint",
    "paint_filled",
    "label_map_dtype",
]

#: Estimated cost, in nanoseconds per voxel and by itemsize, of: one compare per run;
#: the table path's window test (``a - lo <= hi - lo``, counted per block); its gather
#: over every voxel of a block; and its gather/scatter per voxel inside the window
#: (the sparse variant). Measured on 10M-voxel label maps (2-core AMD EPYC, numpy 2.x,
#: ``benchmarks/bench_match.py``); :func:`match_allowed_values` compares
#: ``runs * COMPARE`` with ``WINDOW + min(GATHER, share * SPARSE)``, the share of voxels
#: inside the window being estimated from a sample of the array.
COMPARE_NS = {1: 0.032, 2: 0.04, 4: 0.072, 8: 0.118}
WINDOW_NS = {1: 0.065, 2: 0.12, 4: 0.35, 8: 0.6}
GATHER_NS = {1: 0.19, 2: 0.4, 4: 0.49, 8: 0.72}
SPARSE_NS = {1: 5.0, 2: 5.2, 4: 5.5, 8: 5.9}
#: Voxels sampled (evenly strided) to estimate the share inside the window.
SAMPLE_SIZE = 2048
#: Beyond this many runs, sets too wide for a table use a binary search, not compares.
MAX_SEARCH_COMPARE_RUNS = 8
#: Bytes of input processed per block (keeps the temporaries in L2 cache).
BLOCK_BYTES = 1 << 18
#: Largest window ``hi - lo`` for which 32/64-bit arrays use a lookup table (a table
#: of that many bytes); wider sets use a binary search of the runs.
MAX_TABLE_SPAN = 1 << 22
#: Stride of the probe (a strided sample of a block's offsets) that tells the table path
#: whether a block is dense enough for a full gather without an exact window test.
BLOCK_PROBE_STRIDE = 61
#: 8-bit arrays with at least this many voxels read the table by voxel pairs.
PAIR_TABLE_MIN_SIZE = 1 << 15


def smallest_int_dtype(lo: int, hi: int, *, torch_safe: bool = False) -> np.dtype:
    """The smallest integer dtype that holds every value of ``lo..hi``: the one "smallest
    dtype" rule of medmask (label maps, label tables, MONAI outputs).

    Unsigned types are tried first when ``lo >= 0``, then signed ones.

    Args:
        lo: The smallest value to store.
        hi: The largest value to store.
        torch_safe: Only types torch's ordinary kernels support: ``uint8``, then signed
            types (torch has few kernels for ``uint16``/``uint32``/``uint64``: no ``flip``).

    Returns:
        ``uint8`` ... ``uint64`` or ``int8`` ... ``int64``.

    Raises:
        MaskValidationError: The range does not fit in 64-bit integers (also a
            ``ValueError``).

    Example:
        >>> smallest_int_dtype(0, 300), smallest_int_dtype(-1, 100)
        (dtype('uint16'), dtype('int8'))
        >>> smallest_int_dtype(0, 300, torch_safe=True)
        dtype('int16')
    """
    lo, hi = int(lo), int(hi)
    unsigned = (np.uint8,) if torch_safe else (np.uint8, np.uint16, np.uint32, np.uint64)
    for dt in (*(unsigned if lo >= 0 else ()), np.int8, np.int16, np.int32, np.int64):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dt)
    kind = "torch-safe integer types" if torch_safe else "64-bit integers"
    raise MaskValidationError(f"values {lo}..{hi} do not fit in {kind}")


def smallest_uint_dtype(max_value: int) -> np.dtype:
    """The smallest unsigned integer dtype that holds ``max_value``
    (:func:`smallest_int_dtype` of ``0..max_value``).

    Args:
        max_value: A non-negative integer (the largest value to store).

    Returns:
        ``uint8``, ``uint16``, ``uint32`` or ``uint64`` (never ``bool``).

    Raises:
        ValueError: ``max_value`` is negative or does not fit in 64 bits.

    Example:
        >>> smallest_uint_dtype(255), smallest_uint_dtype(256)
        (dtype('uint8'), dtype('uint16'))
    """
    max_value = int(max_value)
    if max_value < 0:
        raise ValueError(f"max_value must be non-negative, got {max_value}")
    return smallest_int_dtype(0, max_value)


# -- the allowed set -----------------------------------------------------------------------


def _bad_member(v: object) -> MaskValidationError:
    return MaskValidationError(f"allowed values must be integers, got {v!r} ({type(v).__name__})")


def _as_int(v: object) -> int:
    """One member of the allowed set as a Python int (integral floats accepted)."""
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v.item()
    if isinstance(v, numbers.Integral | np.bool_):  # int, bool, numpy integers
        return int(v)
    if isinstance(v, numbers.Real):  # float, numpy floats, Fraction: only if integral
        try:
            iv = int(v)
        except (ValueError, OverflowError):  # nan, inf
            raise _bad_member(v) from None
        if iv == v:
            return iv
    raise _bad_member(v)


def _int_values(allowed_set: object) -> Iterable[int]:
    """The members of ``allowed_set`` as Python ints (unsorted, maybe repeated)."""
    if isinstance(allowed_set, numbers.Integral) and not isinstance(allowed_set, bool):
        return [int(allowed_set)]  # a single label
    if isinstance(allowed_set, np.ndarray):
        kind = allowed_set.dtype.kind
        if kind in "iub":
            return [int(v) for v in np.unique(allowed_set).tolist()]
        if kind == "f":
            vals = np.unique(allowed_set)
            bad = vals[~np.isfinite(vals)]
            if not bad.size:
                bad = vals[vals != np.trunc(vals)]
            if bad.size:
                raise _bad_member(bad.flat[0])
            return [int(v) for v in vals.tolist()]
        if kind != "O":
            raise MaskValidationError(
                f"allowed values must be integers, got an array of dtype {allowed_set.dtype}"
            )
        allowed_set = allowed_set.ravel().tolist()
    if isinstance(allowed_set, str | bytes) or not isinstance(allowed_set, Iterable):
        raise MaskValidationError(
            "allowed_set must be an iterable of integers (set, list, tuple, range, "
            f"integer array), got {type(allowed_set).__name__} {allowed_set!r}"
        )
    return [_as_int(v) for v in allowed_set]


def _range_runs(r: range, vmin: int, vmax: int) -> list[tuple[int, int]]:
    """Runs of a ``range`` clipped to ``[vmin, vmax]``, without iterating the range."""
    if r.step < 0:
        r = r[::-1]
    if not r:
        return []
    if r.step == 1:
        lo, hi = max(r.start, vmin), min(r[-1], vmax)
        return [(lo, hi)] if lo <= hi else []
    i0 = max(0, -((r.start - vmin) // r.step))  # first index with value >= vmin
    i1 = max(0, (vmax - r.start) // r.step + 1)  # one past the last with value <= vmax
    return [(v, v) for v in r[i0:i1]]


def value_runs(values: list[int]) -> list[tuple[int, int]]:
    """Sorted unique ints -> inclusive ``(lo, hi)`` runs of consecutive integers.

    Example:
        >>> value_runs([1, 2, 3, 7, 9, 10])
        [(1, 3), (7, 7), (9, 10)]
    """
    runs: list[tuple[int, int]] = []
    for v in values:
        if runs and v == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


def _allowed_runs(allowed_set: object, vmin: int, vmax: int) -> list[tuple[int, int]]:
    """Sorted, disjoint, non-adjacent runs of the allowed values within ``[vmin, vmax]``."""
    if isinstance(allowed_set, range):
        return _range_runs(allowed_set, vmin, vmax)
    return value_runs(sorted({v for v in _int_values(allowed_set) if vmin <= v <= vmax}))


# -- the public function -------------------------------------------------------------------


def match_allowed_values(image_data: np.ndarray, allowed_set: Iterable[int] | int) -> np.ndarray:
    """Boolean array of the voxels whose value is in ``allowed_set``.

    Exact for every integer dtype (``bool``, ``uint8`` ... ``uint64``, ``int8`` ...
    ``int64``, either byte order) and any set: empty, one value, ranges, scattered
    values. Values the dtype cannot hold (e.g. 256 or -1 for ``uint8``, or Python
    ints of any size) never match; nothing wraps around. The strategy (compares,
    lookup table, binary search) is chosen per call; see the module documentation.

    Integral floats in the set (``2.0``, ``np.float32(3)``) are accepted as the
    integers they equal, so labels read back from JSON or float arrays work;
    ``True``/``False`` count as 1/0. Anything else that is not an integer raises.

    Args:
        image_data: Integer or bool label array of any shape, including 0-d; it may
            be a non-contiguous view. It is never modified.
        allowed_set: The values to keep: any iterable of integers (``set``, ``list``,
            ``tuple``, ``range``, integer ``numpy`` array), possibly empty; a single
            integer is accepted too.

    Returns:
        A new ``bool`` array with ``image_data``'s shape, True where the voxel's
        value is in ``allowed_set``.

    Raises:
        MaskValidationError: ``image_data`` is not an integer or bool array (e.g. a
            float array), or ``allowed_set`` is not an iterable of integers or holds
            a non-integral member (``1.5``, ``nan``, ``"a"``, ``None``).

    Example:
        >>> lab = np.array([[0, 1, 2], [3, 7, 255]], np.uint8)
        >>> match_allowed_values(lab, {1, 2, 7, 256, -1}).astype(int).tolist()
        [[0, 1, 1], [0, 1, 0]]
        >>> match_allowed_values(lab, range(2, 4)).astype(int).tolist()
        [[0, 0, 1], [1, 0, 0]]
    """
    arr = _native_integers(np.asarray(image_data))
    info = np.iinfo(arr.dtype)
    vmin, vmax = int(info.min), int(info.max)
    runs = _allowed_runs(allowed_set, vmin, vmax)
    if not runs or arr.size == 0:
        return np.zeros(arr.shape, bool)
    if runs[0] == (vmin, vmax):
        return np.ones(arr.shape, bool)
    if len(runs) == 1 and runs[0][0] == runs[0][1]:
        return np.asarray(np.equal(arr, arr.dtype.type(runs[0][0])))

    # Work on a C-contiguous 1-D view (F-ordered input: its transpose is C-ordered).
    if arr.flags.c_contiguous:
        src, flip = arr, False
    elif arr.flags.f_contiguous:
        src, flip = arr.T, True
    else:
        src, flip = np.ascontiguousarray(arr), False
    flat = src.reshape(-1)
    out = np.empty(flat.size, bool)
    _STRATEGIES[_strategy(flat, runs)](flat, runs, out)
    out = out.reshape(src.shape)
    return out.T if flip else out


def _native_integers(arr: np.ndarray) -> np.ndarray:
    """A label array as native-order integers (bool viewed as uint8).

    Raises:
        MaskValidationError: Not an integer or bool array.
    """
    kind = arr.dtype.kind
    if kind not in "biu":
        raise MaskValidationError(
            f"match_allowed_values needs an integer or bool label array, got dtype {arr.dtype}"
            + (" (cast label maps to an integer dtype first)" if kind == "f" else "")
        )
    if kind == "b":
        return arr.view(np.uint8)
    if not arr.dtype.isnative:
        return arr.astype(arr.dtype.newbyteorder("="))
    return arr


def _strategy(flat: np.ndarray, runs: list[tuple[int, int]]) -> str:
    """``"compares"``, ``"table"`` or ``"search"``: the cheapest exact strategy by the cost
    model of the module documentation."""
    size = flat.dtype.itemsize
    lo, hi = runs[0][0], runs[-1][1]
    table_ok = size <= 2 or hi - lo <= min(MAX_TABLE_SPAN, max(flat.size, 1 << 16))
    if table_ok:
        compare = len(runs) * COMPARE_NS[size]
        window = WINDOW_NS[size] + min(
            GATHER_NS[size], _window_share(flat, lo, hi) * SPARSE_NS[size]
        )
        return "compares" if compare <= window else "table"
    return "compares" if len(runs) <= MAX_SEARCH_COMPARE_RUNS else "search"


# -- strategies (1-D contiguous native input, preallocated 1-D bool output) ------------------


def _unsigned(flat: np.ndarray) -> tuple[np.ndarray, np.dtype, int]:
    udt = np.dtype(f"u{flat.dtype.itemsize}")
    return flat.view(udt), udt, (1 << (8 * udt.itemsize)) - 1


def _block(flat: np.ndarray) -> int:
    """Elements per block: a multiple of 64, so that every block but the last is even."""
    return max(64, BLOCK_BYTES // flat.dtype.itemsize) & ~63


def _window_share(flat: np.ndarray, lo: int, hi: int) -> float:
    """Share of voxels inside ``[lo, hi]``, estimated from an evenly strided sample."""
    sample = flat[:: max(1, flat.size // SAMPLE_SIZE)]
    su, udt, mask = _unsigned(sample)
    inside = np.subtract(su, udt.type(lo & mask)) <= udt.type(hi - lo)
    return np.count_nonzero(inside) / max(1, inside.size)


def _match_compares(flat: np.ndarray, runs: list[tuple[int, int]], out: np.ndarray) -> None:
    """OR of one compare per run, block by block."""
    fu, udt, mask = _unsigned(flat)
    ops = [
        (flat, flat.dtype.type(lo), None)
        if lo == hi
        else (fu, udt.type(lo & mask), udt.type(hi - lo))
        for lo, hi in runs
    ]
    n = flat.size
    step = min(n, _block(flat))
    hit = np.empty(step, bool) if len(ops) > 1 else None
    diff = np.empty(step, udt) if any(op[2] is not None for op in ops) else None
    for i in range(0, n, step):
        j = min(i + step, n)
        o = out[i:j]
        for r, (a, lo, width) in enumerate(ops):
            dst = o if r == 0 else hit[: j - i]
            if width is None:
                np.equal(a[i:j], lo, out=dst)
            else:  # lo <= a <= hi  <=>  (a - lo) mod 2**bits <= hi - lo
                d = diff[: j - i]
                np.subtract(a[i:j], lo, out=d)
                np.less_equal(d, width, out=dst)
            if r:
                np.logical_or(o, dst, out=o)


def _match_table(flat: np.ndarray, runs: list[tuple[int, int]], out: np.ndarray) -> None:
    """Lookup table indexed by the offset ``a - lo`` into the set's window."""
    fu, udt, mask = _unsigned(flat)
    lo, span = runs[0][0], runs[-1][1] - runs[0][0]
    size = flat.dtype.itemsize
    # table[d] is True iff lo + d is allowed; past the window it is False: 8/16-bit
    # tables cover every offset, wider ones end with one False entry that
    # take(mode="clip") maps every larger offset onto.
    table = np.zeros(1 << (8 * size) if size <= 2 else span + 2, bool)
    for a, b in runs:
        table[a - lo : b - lo + 1] = True
    n = flat.size
    lo_u, width = udt.type(lo & mask), udt.type(span)
    # 8/16-bit: dense blocks index a table by the raw (unsigned) value, no subtraction
    raw = np.roll(table, lo & mask) if size <= 2 else None
    pairs = None
    if size == 1 and n >= PAIR_TABLE_MIN_SIZE:
        # two voxels per lookup: pairs[x] holds the answers for both bytes of x
        t16 = raw.astype(np.uint16)
        pairs = ((t16[:, None] << 8) | t16[None, :]).reshape(-1)
    past = udt.type(min(span + 1, mask))
    sparse = GATHER_NS[size] / SPARSE_NS[size]  # share below which a block goes sparse
    step = min(n, _block(flat))
    diff = np.empty(step, udt)
    for i in range(0, n, step):
        j = min(i + step, n)
        m = j - i
        a, o = fu[i:j], out[i:j]
        d = None
        probe = np.subtract(a[::BLOCK_PROBE_STRIDE], lo_u)
        if np.count_nonzero(probe <= width) <= sparse * probe.size:
            # few voxels of the block inside the window (maybe none): settle them exactly
            d = diff[:m]
            np.subtract(a, lo_u, out=d)
            if np.minimum.reduce(d) > width:  # none inside: cheaper than compare + count
                o.fill(False)
                continue
            np.less_equal(d, width, out=o)
            inside = np.count_nonzero(o)
            if inside < sparse * m:
                idx = np.flatnonzero(o)
                o[idx] = table.take(d.take(idx))
                continue
        if pairs is not None:
            even = m & ~1
            np.take(pairs, a[:even].view(np.uint16), out=o[:even].view(np.uint16), mode="wrap")
            if m != even:
                o[-1] = raw[a[-1]]
        elif raw is not None:
            np.take(raw, a, out=o, mode="wrap")
        else:
            if d is None:
                d = diff[:m]
                np.subtract(a, lo_u, out=d)
            if size == 8:  # uint64 offsets past intp's range would wrap to negatives
                np.minimum(d, past, out=d)
            np.take(table, d, out=o, mode="clip")


def _match_search(flat: np.ndarray, runs: list[tuple[int, int]], out: np.ndarray) -> None:
    """Binary search of the runs: for sets too wide for a table (32/64-bit only)."""
    starts = np.array([a for a, _ in runs], flat.dtype)
    ends = np.array([b for _, b in runs], flat.dtype)
    n = flat.size
    step = min(n, _block(flat))
    for i in range(0, n, step):
        a = flat[i : i + step]
        k = np.searchsorted(starts, a, side="right") - 1  # last run starting at or before a
        np.logical_and(k >= 0, a <= ends.take(k, mode="clip"), out=out[i : i + step])


#: The strategies :func:`match_allowed_values` chooses among (see :func:`_strategy`).
_STRATEGIES = {"compares": _match_compares, "table": _match_table, "search": _match_search}


# -- painting masks into one label map ------------------------------------------------------
#: How overlapping masks are settled when they are painted into one label map: ``"last"``
#: (a later mask in the table's order wins, the default: ``LoadMask``'s rule), ``"first"``
#: (an earlier mask keeps its voxels), ``"smaller"`` (the mask with fewer voxels wins, so
#: that small structures survive; equal sizes: the later wins).
OVERLAP_RULES = ("last", "first", "smaller")


def paint_order(n: int, overlap: str, sizes: Iterable[int] | None = None) -> list[int]:
    """The order in which ``n`` layers are painted so that the last one painted wins.

    Args:
        n: Number of layers, in table order.
        overlap: One of :data:`OVERLAP_RULES`.
        sizes: Voxels of each layer (needed by ``"smaller"``).

    Returns:
        Layer positions, first painted first.

    Raises:
        MaskValidationError: An unknown rule, or ``"smaller"`` without sizes.
    """
    if overlap == "last":
        return list(range(n))
    if overlap == "first":
        return list(range(n))[::-1]
    if overlap == "smaller":
        if sizes is None:
            raise MaskValidationError("overlap='smaller' needs the layers' sizes")
        size = list(sizes)
        return sorted(range(n), key=lambda i: -size[i])  # biggest first; stable for ties
    raise MaskValidationError(f"overlap must be one of {OVERLAP_RULES}, got {overlap!r}")


def paint_method(dtype: np.dtype, values: Iterable[int]) -> str:
    """The fastest exact way to paint ``values``, in this order, into an array of ``dtype``
    where a later value wins.

    Returns:
        ``"max"`` (``numpy.maximum``: exact when the values never decrease, as in the usual
        1..N numbering, for ``uint8``), ``"xor"`` (a blend exact for any order, integers) or
        ``"copy"`` (``numpy.copyto`` with ``where=``, any dtype). Figures:
        ``benchmarks/study_window_layouts.py``.
    """
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu":
        return "copy"
    vals = list(values)
    if dtype == np.uint8 and all(a <= b for a, b in zip(vals, vals[1:], strict=False)):
        return "max"
    return "xor"


def paint(
    dst: np.ndarray, where: np.ndarray, value: int, method: str, *, scratch: bool = False
) -> None:
    """Paint ``value`` into ``dst`` where ``where`` is set (a later call wins).

    Args:
        dst: A view of the label map (``(z, y, x)``), written in place.
        where: A boolean array of ``dst``'s shape.
        value: The label.
        method: From :func:`paint_method` for the values painted into ``dst``.
        scratch: ``where`` may be overwritten (saves a temporary array of its size).
    """
    if method == "copy":
        np.copyto(dst, dst.dtype.type(value), where=where)
        return
    bits = where.view(np.uint8)
    if method == "max":
        if value != 1:
            bits = np.multiply(bits, np.uint8(value), out=bits if scratch else None)
        np.maximum(dst, bits, out=dst)
        return
    # xor blend: dst ^= (dst ^ value) & mask, the mask all ones where set (-1)
    mask = np.negative(bits, dtype=dst.dtype)
    np.bitwise_and(np.bitwise_xor(dst, dst.dtype.type(value)), mask, out=mask)
    np.bitwise_xor(dst, mask, out=dst)


def paint_filled(dst: np.ndarray, filled: np.ndarray, value: int, method: str) -> None:
    """Paint a ``uint8`` map whose part ``filled`` already holds the mask's voxels as bytes
    (``value`` where set for ``"max"``, 255 for ``"xor"``; made while unpacking, which saves
    a pass): the same result as :func:`paint` of the boolean mask.

    Args:
        dst: A ``uint8`` view of the label map, written in place.
        filled: The coded bytes of ``dst``'s shape (overwritten by ``"xor"``).
        value: The label.
        method: ``"max"`` or ``"xor"`` (:func:`paint_method`).
    """
    if method == "max":
        np.maximum(dst, filled, out=dst)
        return
    np.bitwise_and(np.bitwise_xor(dst, np.uint8(value)), filled, out=filled)
    np.bitwise_xor(dst, filled, out=dst)


def label_map_dtype(dtype: object, top: int) -> np.dtype:
    """The dtype of a label map whose largest label is ``top``.

    Args:
        dtype: ``None`` for the default, else a NumPy dtype (or anything ``numpy.dtype``
            takes) that must hold ``top``: an integer type, a float type, or ``bool`` when
            ``top <= 1``.
        top: The largest label painted.

    Returns:
        The caller's dtype, or by default the torch-safe series of
        :func:`smallest_int_dtype` (``uint8`` up to 255, then ``int16``, ``int32``,
        ``int64``: what ``LoadMask`` and training code can use as they are).

    Raises:
        MaskValidationError: ``dtype`` is not numeric or cannot hold ``top``.
    """
    if dtype is None:
        return smallest_int_dtype(0, max(int(top), 1), torch_safe=True)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise MaskValidationError(f"not a NumPy dtype: {dtype!r}") from None
    if dt.kind not in "biuf":
        raise MaskValidationError(f"dtype {dt} is not a numeric type")
    if dt.kind == "b" and top > 1:
        raise MaskValidationError(f"dtype bool cannot hold label {top}")
    if dt.kind in "iu" and top > np.iinfo(dt).max:
        raise MaskValidationError(f"dtype {dt} cannot hold label {top}")
    return dt
