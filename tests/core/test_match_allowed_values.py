"""match_allowed_values against a pure-Python reference, for every integer dtype and path."""

from __future__ import annotations

import doctest
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import medmask.ops as ops
from medmask.errors import MaskValidationError
from medmask.ops import match_allowed_values, smallest_uint_dtype

INT_DTYPES = [
    np.bool_,
    np.uint8,
    np.int8,
    np.uint16,
    np.int16,
    np.uint32,
    np.int32,
    np.uint64,
    np.int64,
]

#: Module settings that force each strategy (and tiny blocks, so that small arrays span
#: several blocks and the pair table is used).
STRATEGIES = {
    "auto": {},
    "compares": {"COMPARE_NS": dict.fromkeys((1, 2, 4, 8), 0.0), "MAX_SEARCH_COMPARE_RUNS": 10**9},
    "table-dense": {
        "COMPARE_NS": dict.fromkeys((1, 2, 4, 8), 1e9),
        "SPARSE_NS": dict.fromkeys((1, 2, 4, 8), 1e9),
    },
    "table-sparse": {
        "COMPARE_NS": dict.fromkeys((1, 2, 4, 8), 1e9),
        "GATHER_NS": dict.fromkeys((1, 2, 4, 8), 1e9),
        "SPARSE_NS": dict.fromkeys((1, 2, 4, 8), 1e-9),
    },
    "search": {
        "COMPARE_NS": dict.fromkeys((1, 2, 4, 8), 1e9),
        "MAX_TABLE_SPAN": -1,
        "MAX_SEARCH_COMPARE_RUNS": 0,
    },
}
SMALL_BLOCKS = {"BLOCK_BYTES": 64, "PAIR_TABLE_MIN_SIZE": 0, "BLOCK_PROBE_STRIDE": 3}


def reference(arr: np.ndarray, values) -> np.ndarray:
    allowed = {int(v) for v in values}
    return np.array([int(v) in allowed for v in arr.reshape(-1).tolist()], bool).reshape(arr.shape)


def call(arr: np.ndarray, values, strategy: str = "auto", small_blocks: bool = False):
    settings_ = {**STRATEGIES[strategy], **(SMALL_BLOCKS if small_blocks else {})}
    with pytest.MonkeyPatch.context() as mp:
        for name, value in settings_.items():
            mp.setattr(ops, name, value)
        return match_allowed_values(arr, values)


@st.composite
def label_arrays(draw) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(INT_DTYPES)))
    shape = tuple(draw(st.lists(st.integers(0, 9), min_size=0, max_size=3)))
    if int(np.prod(shape)) > 400:
        shape = (draw(st.integers(0, 400)),)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(bool)
    info = np.iinfo(dtype)
    centre = draw(st.sampled_from([0, int(info.min), int(info.max), int(info.max) // 2]))
    lo, hi = max(int(info.min), centre - 40), min(int(info.max), centre + 40)
    arr = rng.integers(lo, hi, size=shape, endpoint=True, dtype=dtype)
    if arr.size and draw(st.booleans()):  # dtype extremes and 0 among the voxels
        flat = arr.reshape(-1)
        extremes = [info.min, info.max, 0]
        flat[rng.integers(0, flat.size, len(extremes))] = np.array(extremes, dtype)
    return arr


@st.composite
def cases(draw):
    arr = draw(label_arrays())
    info = np.iinfo(np.uint8 if arr.dtype == np.bool_ else arr.dtype)
    near = [int(v) for v in np.unique(arr)[:20]] or [0]
    member = st.one_of(
        st.sampled_from(near),
        st.builds(lambda v, d: v + d, st.sampled_from(near), st.integers(-3, 3)),
        st.sampled_from(
            [int(info.min), int(info.max), int(info.min) - 1, int(info.max) + 1, 256, -1]
        ),
        st.sampled_from([2**63, 2**64, -(2**63) - 1, 2**70, -(2**70), 10**30]),
        st.integers(-(2**65), 2**65),
    )
    kind = draw(st.sampled_from(["list", "set", "tuple", "array", "range", "runs", "empty"]))
    if kind == "empty":
        return arr, draw(st.sampled_from([[], set(), (), range(0), np.array([], np.int64)]))
    if kind == "range":
        start = draw(member)
        step = draw(st.sampled_from([1, 1, -1, 2, 3, -3, 7]))
        return arr, range(start, start + step * draw(st.integers(0, 60)), step)
    values = draw(st.lists(member, max_size=40))
    if kind == "runs":  # a few runs of consecutive values
        values = [v + k for v in values[:6] for k in range(draw(st.integers(1, 5)))]
    if kind == "set":
        return arr, set(values)
    if kind == "tuple":
        return arr, tuple(values)
    if kind == "array":  # an integer array of the in-range values (as numpy holds them)
        fits = [v for v in values if -(2**63) <= v < 2**63]
        return arr, np.array(fits, np.int64)
    return arr, values


def views(arr: np.ndarray) -> list[np.ndarray]:
    """The array and non-contiguous / F-ordered / read-only views of it."""
    out = [arr]
    if arr.ndim >= 1 and arr.shape[-1] > 1:
        out.append(arr[..., ::-1])
        out.append(arr[..., ::2])
    if arr.ndim >= 2:
        out.append(arr.T)  # F-contiguous
        out.append(np.swapaxes(arr, 0, -1)[::-1])
    ro = arr.copy()
    ro.flags.writeable = False
    out.append(ro)
    return out


@settings(max_examples=250, deadline=None)
@given(
    case=cases(),
    strategy=st.sampled_from(sorted(STRATEGIES)),
    small_blocks=st.booleans(),
)
def test_matches_reference(case, strategy, small_blocks):
    arr, values = case
    for view in views(arr):
        before = view.copy()
        got = call(view, values, strategy, small_blocks)
        assert isinstance(got, np.ndarray)
        assert got.dtype == np.bool_ and got.shape == view.shape
        np.testing.assert_array_equal(got, reference(view, values))
        np.testing.assert_array_equal(view, before)  # input untouched
        assert not np.shares_memory(got, view)


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
@pytest.mark.parametrize("dtype", INT_DTYPES[1:])
def test_every_strategy_on_a_label_map(dtype, strategy):
    """A 3-D map big enough for several blocks, the pair table and odd tails."""
    info = np.iinfo(dtype)
    rng = np.random.default_rng(7)
    lab = rng.integers(0, 30, size=(3, 17, 23)).astype(dtype)  # odd size: 1173 voxels
    lab[0, 0, :3] = np.array([info.min, info.max, info.max - 1], dtype)
    lab[2] = 0  # a background block
    sets = [
        [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23],
        [int(info.min), 0, 2, 4, int(info.max)],
        list(range(5, 12)) + [20, 22, 25, 27, 29] + [int(info.max) + 1, int(info.min) - 1],
        [100, 102, 104, 106, 108, 110, 112, 114],  # none present
    ]
    for values in sets:
        for small in (False, True):
            for view in (lab, lab[:, ::-1, ::2], lab.T):
                got = call(view, values, strategy, small)
                np.testing.assert_array_equal(got, reference(view, values), err_msg=f"{values}")


@pytest.mark.parametrize("dtype", INT_DTYPES[1:])
def test_edge_sets(dtype):
    info = np.iinfo(dtype)
    arr = np.array([info.min, 0, 1, 2, info.max], dtype=dtype)
    for empty in ([], set(), (), range(5, 5), np.array([], np.uint8), iter([])):
        got = match_allowed_values(arr, empty)
        assert got.shape == arr.shape and not got.any()
    # values one past the range never wrap around onto the extremes
    assert not match_allowed_values(arr, [int(info.max) + 1, int(info.min) - 1]).any()
    assert not match_allowed_values(arr, [int(info.max) + 1 + int(info.max) - int(info.min)]).any()
    assert not match_allowed_values(arr, [2**64 + 1, 2**64, -(2**64), 2**200]).any()
    np.testing.assert_array_equal(match_allowed_values(arr, [int(info.max)]), arr == info.max)
    np.testing.assert_array_equal(match_allowed_values(arr, [int(info.min)]), arr == info.min)
    np.testing.assert_array_equal(match_allowed_values(arr, 1), arr == 1)
    np.testing.assert_array_equal(
        match_allowed_values(arr, np.array([1, 2])), (arr == 1) | (arr == 2)
    )
    # the whole dtype, as a huge range or as its bounds
    assert match_allowed_values(arr, range(-(2**70), 2**70)).all()
    assert match_allowed_values(arr, range(int(info.min), int(info.max) + 1)).all()
    np.testing.assert_array_equal(
        match_allowed_values(arr, range(2**70, -(2**70), -1)), np.ones(5, bool)
    )


def test_uint8_uint16_extremes_do_not_wrap():
    u8 = np.array([0, 255, 1, 254], np.uint8)
    assert not match_allowed_values(u8, [256, -1, 511, -256, 65535]).any()
    assert match_allowed_values(u8, [256, 255]).tolist() == [False, True, False, False]
    i8 = np.array([-128, 127, 0, -1], np.int8)
    assert match_allowed_values(i8, [255, 128, -129]).tolist() == [False] * 4
    assert match_allowed_values(i8, [-1, 255]).tolist() == [False, False, False, True]
    u16 = np.array([0, 65535, 1], np.uint16)
    assert not match_allowed_values(u16, [65536, -1, 2**32]).any()


def test_ranges_with_steps_match_their_values():
    arr = np.arange(-128, 128, dtype=np.int8).reshape(16, 16)
    for r in (range(-200, 300, 3), range(127, -129, -5), range(-(2**70), 2**70, 2**69 + 1)):
        np.testing.assert_array_equal(match_allowed_values(arr, r), reference(arr, list(r)[:600]))
    big = np.array([0, 2**62, 2**63 - 1, -(2**63)], np.int64)
    got = match_allowed_values(big, range(0, 2**64, 2**62))
    assert got.tolist() == [True, True, False, False]


def test_zero_dim_and_empty_arrays():
    got = match_allowed_values(np.array(5, np.uint8), [5, 7])
    assert isinstance(got, np.ndarray) and got.shape == () and bool(got)
    got = match_allowed_values(np.array(5, np.uint8), [5])
    assert isinstance(got, np.ndarray) and got.shape == () and bool(got)
    assert match_allowed_values(np.int16(3), [1, 2, 4, 6, 8, 10, 12]).shape == ()
    for shape in ((0,), (3, 0, 2)):
        got = match_allowed_values(np.zeros(shape, np.uint16), range(0, 40, 2))
        assert got.shape == shape and got.dtype == np.bool_


def test_bool_maps_and_other_layouts():
    b = np.array([[[True, False]]])
    np.testing.assert_array_equal(match_allowed_values(b, {1}), b)
    np.testing.assert_array_equal(match_allowed_values(b, {0}), ~b)
    np.testing.assert_array_equal(match_allowed_values(b, [True]), b)
    assert match_allowed_values(b, {0, 1}).all()
    assert not match_allowed_values(b, {2, -1}).any()
    # non-native byte order and an unaligned buffer
    big_endian = np.arange(600, dtype=">i2").reshape(20, 30)
    values = list(range(0, 600, 7))
    np.testing.assert_array_equal(
        match_allowed_values(big_endian, values), reference(big_endian, values)
    )
    buf = np.arange(301, dtype=np.uint16).tobytes()
    unaligned = np.frombuffer(buf[1:-1], dtype=np.uint16)  # read-only, odd address
    np.testing.assert_array_equal(
        match_allowed_values(unaligned, values), reference(unaligned, values)
    )
    odd = np.arange(1002, dtype=np.uint16).astype(np.uint8)[1:]  # odd address
    assert odd.ctypes.data % 2 == 1
    for strategy in ("table-dense", "auto"):
        np.testing.assert_array_equal(
            call(odd, values, strategy, small_blocks=True), reference(odd, values)
        )
    # plain Python sequences work as arrays
    assert match_allowed_values([[1, 2], [3, 4]], {2, 3}).tolist() == [[False, True], [True, False]]


def test_integral_floats_and_other_members_accepted():
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    expected = (arr == 2) | (arr == 3)
    for values in (
        [2.0, 3.0],
        np.array([2.0, 3.0]),
        [np.float32(2), np.int64(3)],
        [Fraction(4, 2), 3],
        (np.array(2), np.uint64(3)),
        [2, 3, 1e30, -1.0],
        np.array([2, 3], np.uint64),
        np.array([2, 3], dtype=object),
    ):
        np.testing.assert_array_equal(match_allowed_values(arr, values), expected)


def test_bad_input():
    for bad in (
        np.zeros(3, np.float32),
        np.zeros(3),
        np.zeros(3, np.float16),
        np.zeros(3, complex),
    ):
        with pytest.raises(MaskValidationError, match="integer or bool label array"):
            match_allowed_values(bad, [1])
    with pytest.raises(MaskValidationError, match="integer"):
        match_allowed_values(np.array(["a"]), [1])
    u8 = np.zeros(3, np.uint8)
    for members in ([1.5], [1, "a"], [None], [math.nan], [math.inf], [1j], [[1, 2]], [b"1"]):
        with pytest.raises(MaskValidationError, match="allowed values must be integers"):
            match_allowed_values(u8, members)
    for members in (np.array([1.0, 2.5]), np.array([np.nan]), np.array(["1"]), np.array([1j])):
        with pytest.raises(MaskValidationError, match="allowed values must be integers"):
            match_allowed_values(u8, members)
    for not_iterable in ("12", b"12", object(), 1.0, None, True):
        with pytest.raises(MaskValidationError):
            match_allowed_values(u8, not_iterable)
    assert issubclass(MaskValidationError, ValueError)


def test_smallest_uint_dtype():
    assert smallest_uint_dtype(0) == np.uint8 and smallest_uint_dtype(255) == np.uint8
    assert smallest_uint_dtype(256) == np.uint16 and smallest_uint_dtype(65535) == np.uint16
    assert smallest_uint_dtype(65536) == np.uint32 and smallest_uint_dtype(2**32 - 1) == np.uint32
    assert smallest_uint_dtype(2**32) == np.uint64 and smallest_uint_dtype(2**64 - 1) == np.uint64
    assert smallest_uint_dtype(np.int64(300)) == np.uint16
    assert isinstance(smallest_uint_dtype(1), np.dtype)
    for bad in (-1, 2**64):
        with pytest.raises(ValueError):
            smallest_uint_dtype(bad)


def test_docstring_examples():
    result = doctest.testmod(ops, extraglobs={"np": np})
    assert result.attempted >= 3 and result.failed == 0
