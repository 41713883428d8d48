"""match_allowed_values against a pure-Python reference, for every integer dtype."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medmask import match_allowed_values
from medmask.errors import MaskValidationError
from medmask.ops import smallest_uint_dtype

INT_DTYPES = [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.uint64, np.int64]


def reference(arr: np.ndarray, values) -> np.ndarray:
    allowed = {int(v) for v in values}
    return np.array([int(v) in allowed for v in arr.reshape(-1).tolist()], bool).reshape(arr.shape)


@st.composite
def cases(draw):
    dtype = np.dtype(draw(st.sampled_from(INT_DTYPES)))
    info = np.iinfo(dtype)
    lo = draw(st.sampled_from([info.min, max(info.min, -20), 0]))
    hi = draw(st.sampled_from([info.max, min(info.max, 40)]))
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=3)))
    seed = draw(st.integers(0, 2**32 - 1))
    arr = np.random.default_rng(seed).integers(lo, hi, size=shape, endpoint=True, dtype=dtype)
    member = st.one_of(
        st.integers(int(lo) - 3, int(hi) + 3),
        st.sampled_from(
            [int(info.min), int(info.max), int(info.max) + 1, int(info.min) - 1, 2**70, -(2**70)]
        ),
    )
    kind = draw(st.sampled_from(["list", "range", "mixed"]))
    if kind == "range":
        a = draw(st.integers(int(lo) - 3, int(hi)))
        values = range(a, a + draw(st.integers(0, 12)))
    else:
        values = draw(st.lists(member, max_size=70))
        if kind == "mixed" and values:
            values = [*values, *range(values[0], values[0] + 5)]
    return arr, values


@settings(max_examples=300, deadline=None)
@given(case=cases(), view=st.booleans())
def test_matches_reference(case, view):
    arr, values = case
    if view and arr.ndim >= 1 and arr.shape[-1] > 1:
        arr = arr[..., ::-1]  # non-contiguous input
    before = arr.copy()
    got = match_allowed_values(arr, values)
    assert got.dtype == bool and got.shape == arr.shape
    np.testing.assert_array_equal(got, reference(arr, values))
    np.testing.assert_array_equal(arr, before)  # input untouched


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_edge_sets(dtype):
    info = np.iinfo(dtype)
    arr = np.array([info.min, 0, 1, 2, info.max], dtype=dtype)
    assert not match_allowed_values(arr, []).any()
    assert not match_allowed_values(arr, set()).any()
    # values one past the range never wrap around onto the extremes
    assert not match_allowed_values(arr, [int(info.max) + 1, int(info.min) - 1]).any()
    np.testing.assert_array_equal(match_allowed_values(arr, [int(info.max)]), arr == info.max)
    np.testing.assert_array_equal(match_allowed_values(arr, 1), arr == 1)
    np.testing.assert_array_equal(
        match_allowed_values(arr, np.array([1, 2])), (arr == 1) | (arr == 2)
    )


def test_whole_range_and_bool():
    arr = np.arange(256, dtype=np.uint8).reshape(4, 8, 8)
    assert match_allowed_values(arr, range(256)).all()
    assert match_allowed_values(arr, range(-5, 300)).all()
    b = np.array([[[True, False]]])
    np.testing.assert_array_equal(match_allowed_values(b, {1}), b)
    np.testing.assert_array_equal(match_allowed_values(b, {0}), ~b)
    np.testing.assert_array_equal(match_allowed_values(arr, [2.0, 3.0]), (arr == 2) | (arr == 3))


def test_bad_input():
    with pytest.raises(MaskValidationError, match="integer label array"):
        match_allowed_values(np.zeros(3, np.float32), [1])
    with pytest.raises(MaskValidationError, match="integers"):
        match_allowed_values(np.zeros(3, np.uint8), [1.5])
    with pytest.raises(MaskValidationError, match="integers"):
        match_allowed_values(np.zeros(3, np.uint8), ["a"])
    with pytest.raises(MaskValidationError):
        match_allowed_values(np.zeros(3, np.uint8), "12")


def test_smallest_uint_dtype():
    assert smallest_uint_dtype(0) == np.uint8 and smallest_uint_dtype(255) == np.uint8
    assert smallest_uint_dtype(256) == np.uint16 and smallest_uint_dtype(2**32) == np.uint64
    with pytest.raises(ValueError):
        smallest_uint_dtype(-1)
