"""medmask.inspect.verify_file reports every problem of a file (format.verify_all), not just the first."""

from __future__ import annotations

import numpy as np
from spacetransformer import Space

from medmask import MaskArchive
from medmask.format import open_archive
from medmask.inspect import verify_file
from medmask.io import open_source


def test_every_damaged_mask_is_reported(tmp_path):
    space = Space(shape=(24, 20, 16)).reverse_axis_order()
    path = tmp_path / "case.mska"
    rng = np.random.default_rng(0)
    with MaskArchive(path, "w", space=space) as ar:
        for k in range(5):
            ar.add(f"organ{k}", rng.random(space.shape) < 0.3)
    assert verify_file(path)["problems"] == []
    with open_source(path) as source:  # the format layer says where each blob lies
        offsets = {e.name: e.offset for e in open_archive(source).entries}
    raw = bytearray(path.read_bytes())
    for name in ("organ1", "organ3"):
        raw[offsets[name] + 3] ^= 0xFF
    bad = tmp_path / "bad.mska"
    bad.write_bytes(bytes(raw))
    r = verify_file(bad)
    assert not r["ok"]
    assert len(r["problems"]) == 2
    assert "organ1" in r["problems"][0] and "organ3" in r["problems"][1]
    assert all(str(bad) in p and "checksum" in p for p in r["problems"])
    assert r["error"] == r["problems"][0]
