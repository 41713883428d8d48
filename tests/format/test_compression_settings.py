"""The zstd settings medmask writes with (``medmask.compression``): small boolean payloads keep
level 19's parameters, large ones get a capped search, and every frame stays an ordinary zstd
frame that any zstd decoder reads back exactly."""

from __future__ import annotations

import numpy as np
import pytest
import zstandard

from medmask.codecs import BitZstdCodec, BlobSpec
from medmask.compression import (
    BOOL_CAP_FROM,
    BOOL_SEARCH_LOG,
    BOOL_TARGET_LENGTH,
    INDEX_LEVEL,
    bool_mask_params,
)
from medmask.format.v2.chain import encode_segment


def _organ(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """An organ-like blob: an ellipsoid with a rough surface."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    r = ((zz - shape[0] / 2) / (shape[0] / 2.2)) ** 2 + (
        (yy - shape[1] / 2) / (shape[1] / 2.5)
    ) ** 2
    r = r + ((xx - shape[2] / 2) / (shape[2] / 2.1)) ** 2
    return r + rng.normal(0, 0.05, shape) <= 1


@pytest.mark.parametrize("size", [1, 100, BOOL_CAP_FROM - 1])
def test_small_payloads_keep_the_levels_parameters(size):
    ours, ref = bool_mask_params(size), zstandard.ZstdCompressionParameters.from_level(19, source_size=size)
    for field in ("window_log", "chain_log", "hash_log", "search_log", "min_match"):
        assert getattr(ours, field) == getattr(ref, field), field
    assert ours.target_length == ref.target_length and ours.strategy == ref.strategy


@pytest.mark.parametrize("size", [BOOL_CAP_FROM, 1 << 20, 1 << 26])
def test_large_payloads_get_a_capped_search(size):
    ours, ref = bool_mask_params(size), zstandard.ZstdCompressionParameters.from_level(19, source_size=size)
    assert ours.search_log == min(ref.search_log, BOOL_SEARCH_LOG)
    assert ours.target_length == min(ref.target_length, BOOL_TARGET_LENGTH)
    assert (ours.window_log, ours.strategy) == (ref.window_log, ref.strategy)
    uncapped = bool_mask_params(size, search_log=None, target_length=None)
    assert (uncapped.search_log, uncapped.target_length) == (ref.search_log, ref.target_length)


def test_codec_frames_are_ordinary_zstd_frames():
    big = _organ((60, 120, 160))  # payload 60 * 120 * 20 = 144,000 bytes: capped
    small = _organ((10, 20, 24), seed=1)  # 600 bytes: level 19 as zstd sets it
    codec = BitZstdCodec()
    for arr in (big, small):
        blob = codec.encode(arr)
        payload = np.packbits(arr, axis=2).tobytes()
        d = zstandard.ZstdDecompressor()
        assert d.decompress(blob) == payload  # any zstd reads it
        assert zstandard.get_frame_parameters(blob).content_size == len(payload)
        back = codec.decode(blob, BlobSpec(np.dtype(bool), arr.shape))
        assert np.array_equal(back, arr)
    plain = zstandard.ZstdCompressor(level=19, write_content_size=True)
    assert codec.encode(small) == plain.compress(np.packbits(small, axis=2).tobytes())
    level19 = BitZstdCodec(search_log=None, target_length=None).encode(big)
    assert level19 == plain.compress(np.packbits(big, axis=2).tobytes())
    assert codec.encode(big) != level19  # the cap is in force on a large payload


def test_index_segments_use_the_index_level():
    rows = [["liver", 1, 0, 10, 0, "bool", [0, 1, 0, 1, 0, 1], 1, {"liver": 1}, None, {}]]
    blob = encode_segment(None, 2, rows)
    raw = zstandard.ZstdDecompressor().decompress(blob)
    assert blob == zstandard.ZstdCompressor(level=INDEX_LEVEL, write_content_size=True).compress(
        raw
    )
