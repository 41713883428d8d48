"""Array operations on label maps: fast label selection.

``match_allowed_values`` picks a strategy per call (measured in
``benchmarks/bench_match.py``):

* empty set -> all False; a set covering the whole dtype range -> all True;
* a few runs of consecutive values -> OR of one vectorised compare per run:
  ``==`` for a single value, and ``(a - lo) <= (hi - lo)`` on an unsigned view for
  a range (one subtraction and one compare instead of two compares and an AND);
* many runs on 8/16-bit dtypes -> a boolean lookup table applied in cache-sized
  chunks (cost independent of how many labels are asked for);
* many runs on 32/64-bit dtypes -> ``numpy.isin``.

Values outside the dtype's range are dropped first, so they never match
(no wrap-around).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable

import numpy as np

from .errors import MaskValidationError

__all__ = ["match_allowed_values", "smallest_uint_dtype"]

#: Up to this many runs of consecutive values, 8/16-bit arrays use one compare per run
#: (~0.5-0.8 ms per run on a 10M-voxel map) rather than the lookup table (~5.5 ms).
MAX_RUNS_SMALL = 6
#: Up to this many runs, 32/64-bit arrays use compares rather than ``numpy.isin``.
MAX_RUNS = 8
#: Elements per chunk of the lookup-table path (keeps the index temporaries in cache).
LUT_CHUNK = 1 << 18


def smallest_uint_dtype(max_value: int) -> np.dtype:
    """The smallest unsigned integer dtype that holds ``max_value``.

    Args:
        max_value: A non-negative integer.

    Returns:
        ``uint8``, ``uint16``, ``uint32`` or ``uint64``.

    Raises:
        ValueError: ``max_value`` is negative or does not fit 64 bits.
    """
    max_value = int(max_value)
    if max_value < 0:
        raise ValueError(f"max_value must be non-negative, got {max_value}")
    for dt in (np.uint8, np.uint16, np.uint32, np.uint64):
        if max_value <= np.iinfo(dt).max:
            return np.dtype(dt)
    raise ValueError(f"{max_value} does not fit in 64 bits")


def _as_int_values(allowed_set: object) -> list[int]:
    if isinstance(allowed_set, int | np.integer) and not isinstance(allowed_set, bool):
        allowed_set = [allowed_set]
    if isinstance(allowed_set, np.ndarray):
        if allowed_set.dtype.kind == "f":
            bad = allowed_set[allowed_set != np.round(allowed_set)]
            if bad.size:
                raise MaskValidationError(f"allowed values must be integers, got {bad[0]!r}")
        elif allowed_set.dtype.kind not in "iub":
            raise MaskValidationError(
                f"allowed values must be integers, got dtype {allowed_set.dtype}"
            )
        allowed_set = allowed_set.ravel().tolist()
    if not isinstance(allowed_set, Iterable) or isinstance(allowed_set, str | bytes):
        raise MaskValidationError(
            f"allowed_set must be an iterable of integers, got {allowed_set!r}"
        )
    out = []
    for v in allowed_set:
        if isinstance(v, bool | np.bool_ | numbers.Integral):
            out.append(int(v))
        elif isinstance(v, numbers.Real) and float(v).is_integer():
            out.append(int(v))  # 2.0 means label 2
        else:
            raise MaskValidationError(f"allowed values must be integers, got {v!r}")
    return out


def _runs(values: list[int]) -> list[tuple[int, int]]:
    """Sorted unique values -> inclusive ``(lo, hi)`` runs of consecutive integers."""
    runs: list[tuple[int, int]] = []
    for v in values:
        if runs and v == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


def match_allowed_values(image_data: np.ndarray, allowed_set: Iterable[int] | int) -> np.ndarray:
    """Boolean array of the voxels whose value is in ``allowed_set``.

    Correct for every integer (and bool) dtype and any set: empty, one value,
    contiguous ranges, scattered values, values outside the dtype's range (they
    never match). The input is never modified.

    Args:
        image_data: An integer or bool array of any shape (need not be contiguous).
        allowed_set: The values to keep: an iterable of integers (set, list,
            range, integer array) or a single integer.

    Returns:
        A new boolean array of ``image_data``'s shape.

    Raises:
        MaskValidationError: ``image_data`` is not an integer/bool array, or
            ``allowed_set`` holds non-integers.

    Example:
        >>> lab = np.array([[[0, 1, 2, 3, 7]]], np.uint8)
        >>> match_allowed_values(lab, {1, 2, 7, 300}).astype(int).tolist()
        [[[0, 1, 1, 0, 1]]]
    """
    arr = np.asarray(image_data)
    kind = arr.dtype.kind
    if kind not in "iub":
        raise MaskValidationError(
            f"match_allowed_values needs an integer label array, got dtype {arr.dtype}"
        )
    if kind == "b":
        arr = arr.view(np.uint8)
    info = np.iinfo(arr.dtype)
    values = sorted({v for v in _as_int_values(allowed_set) if info.min <= v <= info.max})
    if not values:
        return np.zeros(arr.shape, bool)
    if len(values) == info.max - info.min + 1:
        return np.ones(arr.shape, bool)
    runs = _runs(values)
    small = arr.dtype.itemsize <= 2
    if len(runs) <= (MAX_RUNS_SMALL if small else MAX_RUNS):
        return _match_runs(arr, runs)
    if small:
        return _match_lut(arr, values)
    return np.isin(arr, np.array(values, dtype=arr.dtype))


def _match_runs(arr: np.ndarray, runs: list[tuple[int, int]]) -> np.ndarray:
    """OR of one vectorised compare per run (``==`` for a single value)."""
    bits = 8 * arr.dtype.itemsize
    udt = np.dtype(f"u{arr.dtype.itemsize}")
    view = (
        arr.view(udt)
        if arr.dtype != udt and arr.flags.c_contiguous
        else arr.astype(udt, copy=False)
    )
    out = None
    for lo, hi in runs:
        if lo == hi:
            hit = arr == arr.dtype.type(lo)
        else:
            # (a - lo) mod 2**bits <= hi - lo  <=>  lo <= a <= hi: one subtraction, one compare
            tmp = np.subtract(view, udt.type(lo % (1 << bits)))
            if udt.itemsize == 1:  # compare in place: one temporary instead of two
                hit = np.less_equal(tmp, udt.type(hi - lo), out=tmp.view(bool))
            else:
                hit = tmp <= udt.type(hi - lo)
        out = hit if out is None else np.logical_or(out, hit, out=out)
    return out


def _match_lut(arr: np.ndarray, values: list[int]) -> np.ndarray:
    """Boolean lookup table for 8/16-bit arrays, applied in cache-sized chunks."""
    nbits = 8 * arr.dtype.itemsize
    lut = np.zeros(1 << nbits, bool)
    lut[np.array(values, dtype=np.int64) & ((1 << nbits) - 1)] = True  # two's complement for signed
    flat = np.ascontiguousarray(arr).reshape(-1).view(np.dtype(f"u{arr.dtype.itemsize}"))
    out = np.empty(flat.shape, bool)
    for i in range(0, flat.size, LUT_CHUNK):
        np.take(lut, flat[i : i + LUT_CHUNK], out=out[i : i + LUT_CHUNK])
    return out.reshape(arr.shape)
