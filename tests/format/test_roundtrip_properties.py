"""Property tests: every format round trip returns equal arrays, mappings and spaces."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spacetransformer import Space

from medmask import MaskArchive, SegmentationMask, load_mask, save_mask

DTYPES = [np.bool_, np.uint8, np.uint16, np.uint32]
CODECS = [None, "zstd", "bitzstd"]


@st.composite
def spaces(draw, shape_zyx):
    spacing = tuple(draw(st.floats(0.1, 5.0)) for _ in range(3))
    origin = tuple(draw(st.floats(-500, 500)) for _ in range(3))
    # a random rotation from a random unit quaternion: oblique grids round-trip too
    q = np.array([draw(st.floats(-1, 1)) for _ in range(4)]) + np.array([1e-3, 0, 0, 0])
    w, x, y, z = q / np.linalg.norm(q)
    rot = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
    xyz = Space(
        shape=tuple(shape_zyx[::-1]),
        spacing=spacing,
        origin=origin,
        x_orientation=tuple(rot[:, 0]),
        y_orientation=tuple(rot[:, 1]),
        z_orientation=tuple(rot[:, 2]),
    )
    return xyz.reverse_axis_order()


@st.composite
def masks(draw):
    shape = tuple(draw(st.integers(1, 12)) for _ in range(3))
    dtype = draw(st.sampled_from(DTYPES))
    kind = draw(st.sampled_from(["random", "empty", "full", "box"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    top = 1 if dtype == np.bool_ else int(min(np.iinfo(dtype).max, 2**32 - 1))
    labels = sorted(set(draw(st.lists(st.integers(1, top), min_size=1, max_size=6))))
    if kind == "empty":
        arr = np.zeros(shape, dtype)
    elif kind == "full":
        arr = np.full(shape, labels[-1], dtype)
    elif kind == "box":
        arr = np.zeros(shape, dtype)
        lo = [rng.integers(0, s) for s in shape]
        hi = [rng.integers(a, s) + 1 for a, s in zip(lo, shape)]
        arr[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = labels[0]
    else:
        arr = rng.choice(np.array([0, *labels], dtype=np.uint64), size=shape).astype(dtype)
    mapping = {f"organ {v} é/{v}": v for v in labels}
    space = draw(spaces(shape))
    return SegmentationMask(arr, mapping, space)


def assert_same(a: SegmentationMask, b: SegmentationMask) -> None:
    assert a.data.dtype == b.data.dtype
    np.testing.assert_array_equal(a.data, b.data)
    assert a.mapping == b.mapping
    assert a.space == b.space
    assert a == b


SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(m=masks(), codec=st.sampled_from(CODECS))
def test_msk_round_trip(tmp_path_factory, m, codec):
    p = tmp_path_factory.mktemp("msk") / "m.msk"
    save_mask(m, p, codec=codec)
    assert_same(load_mask(p), m)


@SETTINGS
@given(data=st.data(), codec=st.sampled_from(CODECS), n=st.integers(1, 5))
def test_mska_round_trip(tmp_path_factory, data, codec, n):
    first = data.draw(masks())
    items = [first]
    for _ in range(n - 1):
        other = data.draw(masks())
        # every mask of an archive shares its space: re-home the array onto the first grid
        arr = np.resize(other.data, first.shape).astype(other.data.dtype)
        items.append(SegmentationMask(arr, other.mapping, first.space))
    p = tmp_path_factory.mktemp("mska") / "a.mska"
    mode = data.draw(st.sampled_from(["w", "a"]))
    with MaskArchive(p, mode, codec=codec) as ar:
        for k, m in enumerate(items):
            ar.add(f"m{k}", m)
    with MaskArchive(p) as ar:
        assert ar.all_names() == [f"m{k}" for k in range(n)]
        for k, m in enumerate(items):
            assert_same(ar[f"m{k}"], m)
            assert_same(ar[k], m)
            crop, box = ar.read_cropped(k)
            if box is None:
                assert not m.data.any()
            else:
                z0, z1, y0, y1, x0, x1 = box
                np.testing.assert_array_equal(crop, m.data[z0:z1, y0:y1, x0:x1])
                assert m.data.sum() == m.data[z0:z1, y0:y1, x0:x1].sum()
