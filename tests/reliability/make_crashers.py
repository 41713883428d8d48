"""Write the inputs with which the reliability sweep found bugs into ``tests/fixtures/crashers/``.

Each file made a reader raise something other than ``CorruptFileError`` or allocate
far beyond its size before the fix named in its docstring entry below. The test suite
replays every file in ``tests/fixtures/crashers/`` (``tests/reliability/test_fuzz_readers.py``, ``tests/reliability/test_fuzz_forged.py``).

    .venv/bin/python -m reliability.make_crashers      (from tests/, or with tests/ on PYTHONPATH)
"""

from __future__ import annotations

import json
from pathlib import Path

from . import samples as S

HERE = Path(__file__).resolve().parents[1] / "fixtures" / "crashers"


def crashers() -> dict[str, bytes]:
    ss = S.build_samples()
    out: dict[str, bytes] = {}
    # ValueError from numpy.zeros: space of (2**31-1)**3 voxels (fixed: base.read_space)
    p = S.parse_msk2(ss["msk2_empty"].data)
    meta = {**p["meta"], "space": {**p["meta"]["space"], "shape": [2**31 - 1] * 3}}
    out["sweep_v2_msk_space_2pow93_voxels.msk"] = S.build_msk2(meta, p["blob"])
    # MemoryError: space of 2**37 voxels, over MAX_VOXELS (fixed: base.read_space)
    raw = ss["mska2"].data
    sp = json.loads(S.parse_mska2(raw)["space"])
    big = json.dumps({**sp, "shape": [2**13, 2**13, 2**11]}).encode()
    out["sweep_v2_mska_space_2pow37_voxels.mska"] = S.mska2_commit(raw, space=big)
    # 8 GiB allocated before a 21-byte blob was checked (fixed: v2.rows._entry_from_row)
    frame = S.rle_frame(1, 2048**3, max_blocks=2)
    row = ["bomb", 1, len(raw), len(frame), S.crc(frame), "uint8", [0, 2048] * 3, 1, {"b": 1}]
    row = S.pad_row(row, S.parse_mska2(raw)["fields"])  # the sample's layout (2.2)
    big = json.dumps({**sp, "shape": [2048] * 3}).encode()
    out["sweep_v2_mska_bomb_row_8GiB.mska"] = S.mska2_commit(raw + frame, rows=[row], space=big)
    # AttributeError: masks listed but no space section (fixed: v2.V2Archive.open)
    rows = [r for r in S.parse_mska2(raw)["rows"] if r[6] is None]
    out["sweep_v2_mska_masks_without_space.mska"] = S.mska2_commit(
        raw, rows=rows, slot={"s_off": 0, "s_len": 0, "s_crc": 0}
    )
    # 2.5 s and 2 GiB to open: 32 KiB index segment of valid JSON + 1 GiB of spaces
    # (fixed: v2.INDEX_MAX_RATIO and a budget for the whole chain)
    p2 = S.parse_mska2(raw)
    seg = json.dumps({"prev": None, "fields": p2["fields"], "rows": p2["rows"]}).encode()
    frame = S.whitespace_bomb(seg, 1 << 30)
    cur = p2["slots"][p2["active"]]
    body = raw[: cur["end"]] + frame
    slot = {"i_off": cur["end"], "i_len": len(frame), "i_crc": S.crc(frame)}
    out["sweep_v2_mska_index_whitespace_1GiB.mska"] = S.mska2_commit(body, slot=slot)
    return out


def main() -> None:
    HERE.mkdir(exist_ok=True)
    for name, data in crashers().items():
        (HERE / name).write_bytes(data)
        print(HERE / name, len(data))


if __name__ == "__main__":
    main()
