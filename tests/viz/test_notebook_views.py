"""Notebook views: SegmentationMask._repr_png_ and MaskArchive._repr_html_ (IPython's hooks)."""

from __future__ import annotations

import zlib

import numpy as np
from spacetransformer import Space

from medmask import MaskArchive, SegmentationMask


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert png[12:16] == b"IHDR"
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def _space() -> Space:
    return Space(shape=(40, 30, 20), spacing=(1.0, 1.5, 2.0)).reverse_axis_order()


def test_segmask_repr_png_is_a_small_non_blank_picture():
    space = _space()
    lab = np.zeros(space.shape, np.uint8)
    lab[3:9, 4:20, 5:30] = 1
    lab[10:15, 5:10, 2:8] = 2
    seg = SegmentationMask(lab, {"liver": 1, "spleen": 2}, space)
    png = seg._repr_png_()
    w, h = _png_size(png)
    assert 16 <= max(w, h) <= 256
    # the pixel data is not one flat colour
    idat = b"".join(
        png[i + 8 : i + 8 + int.from_bytes(png[i : i + 4], "big")]
        for i in range(8, len(png))
        if png[i + 4 : i + 8] == b"IDAT"
    )
    raw = zlib.decompress(idat)
    assert len(set(raw)) > 3


def test_archive_repr_html_lists_masks_and_escapes_names(tmp_path):
    space = _space()
    a = np.zeros(space.shape, bool)
    a[3:9, 4:20, 5:15] = True
    with MaskArchive(tmp_path / "case.mska", "w", space=space) as ar:
        ar.add("liver", a)
        ar.add("<b>odd</b>", np.zeros(space.shape, bool))
    with MaskArchive(tmp_path / "case.mska") as ar:
        page = ar._repr_html_()
        assert "liver" in page and "&lt;b&gt;odd&lt;/b&gt;" in page and "<b>odd</b>" not in page
        assert f"{int(a.sum()):,}" in page or str(int(a.sum())) in page
        assert "data:image/png;base64," in page
    assert "closed" in ar._repr_html_()
