"""Hostile and corrupt files against the reader contract (tests/reliability/contract.py).

Every variant of every sample (``.msk``/``.mska``, versions 1 and 2) produced by
tests/reliability/mutators.py is read through every public read path in a sandboxed worker
process (address space capped, traced memory measured, time bounded). A variant must
raise ``CorruptFileError`` or read back exactly what was stored (version 1, which has no
checksums, may also return different data for a damaged payload); hostile files whose
content is invalid must be rejected. The quick run samples the systematic families; the
long run (``--runslow``) and ``make reliability`` run everything.
"""

from __future__ import annotations

import json
import threading
import tracemalloc

import numpy as np
import pytest

from medmask import MaskArchive, load_mask
from medmask.codecs import MAX_VOXELS
from medmask.errors import CorruptFileError
from reliability import contract as C
from reliability import mutators as M
from reliability import samples as S


@pytest.fixture(scope="module")
def samples():
    return S.build_samples()


def _report(sweep: C.Sweep) -> str:
    lines = [f"{len(sweep.failures)} failures of {sweep.total} cases:"]
    lines += [f"  {s}/{f}/{label}: {why[:300]}" for s, f, label, why in sweep.failures[:25]]
    return "\n".join(lines)


@pytest.mark.parametrize("kind", S.KINDS)
def test_corrupt_and_hostile_variants_quick(samples, kind):
    names = [n for n, s in samples.items() if s.kind == kind]
    cases = M.generate(samples, n_random=25, seed=1, sample_names=names, subsample=0.35)
    sweep = C.run_sweep(cases)
    assert not sweep.failures, _report(sweep)
    assert sweep.total > 300
    families = {fam for (_k, fam, _s) in sweep.counts}
    assert {"truncate-boundary", "bitflip-random", "field-extreme", "hostile", "bomb"} <= {
        "hostile" if f in ("hostile-json", "v1-blob-header") else f for f in families
    }
    assert sweep.max_peak < C.MEMORY_BOUND
    assert sweep.worker_restarts == 0


#: ``(label, field)`` of hostile variants of a 2.2 archive: the field the reader must name
#: when it refuses the mask, or ``None`` when the format allows the variant (it must read).
LAYOUT_22 = [
    ("row1(organs).centroid=floats", "index.centroid"),
    ("row1(organs).centroid=bools", "index.centroid"),
    ("row1(organs).centroid=short", "index.centroid"),
    ("row1(organs).centroid=str", "index.centroid"),
    ("row1(organs).centroid=x=hi+1", "index.centroid"),
    ("row1(organs).centroid=z=lo-1", "index.centroid"),
    ("row1(organs).centroid=unscaled", "index.centroid"),
    ("row1(organs).centroid=2**64", "index.centroid"),
    ("row1(organs).centroid=z=lo", None),
    ("row1(organs).centroid=corner-hi", None),
    ("row1(organs).centroid=null", None),
    ("row3(empty).centroid=zeros", "index.centroid"),
    ("row3(empty).centroid=null", None),
    ("row5(tiny).centroid.x+10", None),
    ("row5(tiny).centroid.x+11", "index.centroid"),
    ("row0(liver,bool).mapping=bare 1", None),
    ("row0(liver,bool).mapping=bare 0", "mapping"),  # a boolean mask is label 1
    ("row0(liver,bool).mapping=bare 2", "mapping"),
    ("row0(liver,bool).mapping=bare True", "mapping"),
    ("row0(liver,bool).mapping=bare 1.5", "mapping"),
    ("row0(liver,bool).mapping=bare -1", "mapping"),
    ("row1(organs,uint8).mapping=bare 1", None),  # three labels, {organs: 1}
    ("row1(organs,uint8).mapping=bare 255", None),
    ("row1(organs,uint8).mapping=bare 256", "mapping"),
    ("row1(organs,uint8).mapping=bare 2147483648", "mapping"),
    ("row4(big,uint32).mapping=bare 2147483648", None),
    ("row4(big,uint32).mapping=bare 4294967296", "mapping"),
    ("row1.mapping.number", None),  # a bare 3: {organs: 3}
    ("row1.extra.centroid=str", None),  # an unknown key of extra in 2.2
    ("row1.extra.unknown-key", None),
    ("row1.extra.attrs=5", "index.extra.attrs"),
    ("seg.fields-of-2.1", "index"),
    ("seg.rows-as-2.1", None),
]
#: The same for a 2.1 archive (``compat="0.3"``).
LAYOUT_21 = [
    ("row0(liver,bool).mapping=bare 1", "mapping"),  # 2.1 has no bare label numbers
    ("row0(liver,bool).mapping={name: 1}", None),
    ("row1.mapping.number", "mapping"),
    ("row1.extra.centroid=str", "index.extra.centroid"),
    ("row1.extra.centroid=outside", "index.extra.centroid"),
    ("row1.extra.centroid=inside", None),
    ("seg.fields-of-2.2", "index"),
    ("seg.rows-as-2.2", None),
]


@pytest.mark.parametrize(
    ("name", "minor", "table"), [("mska2", 2, LAYOUT_22), ("mska2_21", 1, LAYOUT_21)]
)
def test_layout_specific_variants_get_what_the_format_says(samples, tmp_path, name, minor, table):
    """Hostile variants of each index layout, read by medmask: 2.2's centroid column and
    bare label numbers, 2.1's centroid inside ``extra``. A variant the format forbids is
    refused naming its field; one it allows reads (and the mutators' verdicts agree)."""
    s = samples[name]
    assert S.minor_of(S.parse_mska2(s.data)["fields"]) == minor
    cases = {c.label: c for c in M.hostile(s, None, 0)}
    if minor == 1:
        assert not any("].centroid" in label or ").centroid" in label for label in cases)
    for label, field in table:
        case = cases[label]
        assert case.must_reject is (field is not None), label
        res = C.check_bytes(case.data, case.kind, s.expected, s.space, str(tmp_path))
        assert C.verdict(case, res) is None, (label, res)
        if field is None:
            assert res.status in C.READ_STATUSES and not res.failed, (label, res)
        else:
            assert res.status in ("rejected", "partial"), (label, res)
            assert any(f"field '{field}'" in m for m in res.messages), (label, res.messages)


@pytest.mark.parametrize(
    "label, mask",
    [
        ("row0(liver,bool).mapping=bare 0", "liver"),
        ("row0(liver,bool).mapping=bare 2", "liver"),
        ("row1(organs,uint8).mapping=bare 256", "organs"),
        ("row4(big,uint32).mapping=bare 4294967296", "big"),
    ],
)
def test_the_index_paths_refuse_a_mapping_the_mask_cannot_hold(samples, tmp_path, label, mask):
    """A 2.2 row whose (bare) mapping does not fit its dtype (label 0 of a boolean mask, a
    label beyond the dtype) is refused by ``info()``/``infos()`` as by ``ar[name]``:
    ``CorruptFileError`` naming the file, the mask and the field."""
    case = {c.label: c for c in M.hostile(samples["mska2"], None, 0)}[label]
    path = _write(tmp_path, "m.mska", case.data)
    with MaskArchive(path) as ar:
        for read in (lambda: ar[mask], lambda: ar.info(mask), ar.infos):
            with pytest.raises(CorruptFileError) as err:
                read()
            assert (err.value.path, err.value.mask, err.value.field) == (
                str(path),
                mask,
                "mapping",
            ), label


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_corrupt_and_hostile_variants_long(samples, seed):
    sweep = C.run_sweep(M.generate(samples, n_random=600, seed=seed), workers=2)
    assert not sweep.failures, _report(sweep)
    assert sweep.total > 20_000


# -- the bugs the sweep found, as plain regression tests --------------------------------------
def _write(tmp_path, name: str, data: bytes):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _bounded_read(fn, limit: int = 32 << 20):
    """Run ``fn``; return the exception it raised and the traced peak."""
    tracemalloc.start()
    try:
        fn()
    except Exception as exc:  # noqa: BLE001
        err = exc
    else:
        err = None
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < limit, f"traced peak {peak} bytes"
    return err


def _on_a_new_thread(fn, *args):
    """``fn(*args)`` run on a thread of its own; its exception is raised here."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            out["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out.get("value")


@pytest.mark.parametrize("shape", [[2**31 - 1] * 3, [2**13, 2**13, 2**11]])
def test_space_volume_over_the_limit_is_corrupt(samples, tmp_path, shape):
    """A v2 space of ~2**93 voxels used to pass and make read_array raise a bare
    ValueError (or MemoryError) from numpy.zeros."""
    assert np.prod(shape, dtype=object) > MAX_VOXELS
    p = S.parse_msk2(samples["msk2_empty"].data)
    meta = {**p["meta"], "space": {**p["meta"]["space"], "shape": shape}}
    path = _write(tmp_path, "a.msk", S.build_msk2(meta, p["blob"]))
    err = _bounded_read(lambda: load_mask(path))
    assert isinstance(err, CorruptFileError) and err.field == "space.shape", err
    space = json.dumps(
        {**json.loads(S.parse_mska2(samples["mska2"].data)["space"]), "shape": shape}
    )
    path = _write(tmp_path, "a.mska", S.mska2_commit(samples["mska2"].data, space=space.encode()))
    err = _bounded_read(lambda: MaskArchive(path))
    assert isinstance(err, CorruptFileError) and err.field == "space.shape", err
    v1 = S.parse_msk1(samples["msk1"].data)
    space1 = json.dumps({**json.loads(v1["space"]), "shape": shape}).encode()
    path = _write(tmp_path, "v1.msk", S.build_msk1(space1, v1["mapping"], v1["blob"]))
    assert isinstance(_bounded_read(lambda: load_mask(path)), CorruptFileError)


@pytest.mark.parametrize("side", [1024, 2048])
def test_bomb_row_is_rejected_before_the_volume_is_allocated(samples, tmp_path, side):
    """A 21-byte blob whose row declares a side**3 box in a side**3 space: read_array used
    to allocate the full volume (1-8 GiB) before the codec noticed the claim."""
    raw = samples["mska2"].data
    frame = S.rle_frame(1, side**3, max_blocks=2)
    row = ["bomb", 1, len(raw), len(frame), S.crc(frame), "uint8", [0, side] * 3, 1, {"b": 1}]
    row = S.pad_row(row, S.parse_mska2(raw)["fields"])  # the sample's layout (2.2)
    space = json.dumps({**json.loads(S.parse_mska2(raw)["space"]), "shape": [side] * 3}).encode()
    path = _write(tmp_path, "bomb.mska", S.mska2_commit(raw + frame, rows=[row], space=space))

    def read() -> None:
        with MaskArchive(path) as ar:
            ar.read_array("bomb")

    err = _bounded_read(read)
    assert isinstance(err, CorruptFileError) and err.field == "index.length", err


def test_index_whitespace_bomb_is_rejected_cheaply(samples, tmp_path, monkeypatch):
    """32 KiB index segment = valid JSON + 1 GiB of spaces: opening used to take 2.5 s and
    2 GiB of memory (64 such segments per chain were allowed). Counted: the reader refuses
    the frame from its declared size, before decoding any of it."""
    import zstandard

    raw = samples["mska2"].data
    p = S.parse_mska2(raw)
    seg = json.dumps({"prev": None, "fields": p["fields"], "rows": p["rows"]}).encode()
    frame = S.whitespace_bomb(seg, 1 << 30)
    cur = p["slots"][p["active"]]
    slot = {"i_off": cur["end"], "i_len": len(frame), "i_crc": S.crc(frame)}
    path = _write(tmp_path, "ws.mska", S.mska2_commit(raw[: cur["end"]] + frame, slot=slot))
    decoded: list[int] = []
    real = zstandard.ZstdDecompressor

    class Counting:
        """A ZstdDecompressor that counts the bytes it hands out."""

        def __init__(self, *a, **kw):
            self._d = real(*a, **kw)

        def decompress(self, data, *a, **kw):
            out = self._d.decompress(data, *a, **kw)
            decoded.append(len(out))
            return out

        def __getattr__(self, name):
            raise AssertionError(f"ZstdDecompressor.{name} is not counted here: count it")

    def read_all(p):
        with MaskArchive(p) as ar:
            ar.read_all_masks()

    monkeypatch.setattr(zstandard, "ZstdDecompressor", Counting)
    # each read on a new thread: medmask keeps one decompressor per thread, made there
    _on_a_new_thread(read_all, _write(tmp_path, "ok.mska", raw))  # the count sees real reads
    assert sum(decoded) > 0
    decoded.clear()
    err = _bounded_read(lambda: _on_a_new_thread(MaskArchive, path))
    assert isinstance(err, CorruptFileError) and err.field == "index", err
    assert sum(decoded) == 0, decoded  # not one byte of the gigabyte decoded


def test_large_real_indexes_still_open(tmp_path):
    """The index limits leave room for real archives: thousands of masks with sequential
    names (the most compressible rows a writer produces), in one segment and in a chain."""
    from medmask import SegmentationMask
    from medmask.format.v2 import INDEX_MAX_RATIO

    space = S.sample_space()
    empty = SegmentationMask(np.zeros(S.SHAPE, bool), {"organ": 1}, space)
    one = tmp_path / "one.mska"
    with MaskArchive(one, "w") as ar:
        for k in range(3000):
            ar.add_segmask(empty, f"case_000_mask_{k:06d}")
    chain = tmp_path / "chain.mska"
    with MaskArchive(chain, "a") as ar:
        for k in range(300):
            ar.add_segmask(empty, f"m{k:06d}")
    for p, n in ((one, 3000), (chain, 300)):
        with MaskArchive(p) as ar:
            assert len(ar) == n and ar[n - 1] == empty
            ratios = [
                len(json.dumps(seg, separators=(",", ":"))) / length
                for _off, length, seg in S.parse_mska2(p.read_bytes())["segments"]
            ]
            assert max(ratios) < INDEX_MAX_RATIO / 5, ratios


def test_commit_with_masks_but_no_space_is_corrupt(samples, tmp_path):
    """Only empty masks and no space: read_array used to fail with AttributeError."""
    raw = samples["mska2"].data
    rows = [r for r in S.parse_mska2(raw)["rows"] if r[6] is None]
    data = S.mska2_commit(raw, rows=rows, slot={"s_off": 0, "s_len": 0, "s_crc": 0})
    path = _write(tmp_path, "nospace.mska", data)
    with pytest.raises(CorruptFileError, match="no space"):
        MaskArchive(path)


def test_mode_a_refuses_a_corrupt_archive_and_leaves_it(samples, tmp_path):
    raw = bytearray(samples["mska2"].data)
    for off in S.SLOT_OFFSETS:  # both commit slots damaged
        raw[off + 3] ^= 0x10
    path = _write(tmp_path, "bad.mska", bytes(raw))
    for mode in ("r", "a"):
        with pytest.raises(CorruptFileError, match="no valid commit slot"):
            MaskArchive(path, mode)
    assert path.read_bytes() == bytes(raw)


def test_make_crashers_in_the_current_layout_are_rejected():
    """``reliability.make_crashers`` rebuilds the sweep's crashers from the current samples
    (index format 2.2; the stored fixtures are of 2.1): each is rejected as well."""
    from reliability import make_crashers

    built = make_crashers.crashers()
    assert len(built) == 5
    with C.Worker() as w:
        for name, data in built.items():
            kind = ("mska" if data[:4] == b"MSKA" else "msk") + "2"
            if kind == "mska2":
                assert S.parse_mska2(data)["fields"] == S.INDEX_FIELDS, name
            res = w.check("mska2" if kind == "mska2" else "msk2", kind, data)
            assert res.status not in C.FAIL_STATUSES, (name, res)
            assert res.status == "rejected" or res.failed, (name, res)


def test_every_crasher_fixture_is_rejected_under_the_contract():
    """Every input that ever broke a reader (tests/fixtures/crashers/, from this sweep, the
    fuzzers and the campaign) is rejected, within the time and memory bounds, and
    mode 'a' refuses it without touching it."""
    folder = C.TESTS_DIR / "fixtures" / "crashers"
    files = sorted(p for p in folder.iterdir() if p.is_file())
    assert any(p.name.startswith("sweep_") for p in files)
    with C.Worker() as w:
        for p in files:
            data = p.read_bytes()
            kind = ("mska" if data[:4] == b"MSKA" else "msk") + (
                "1" if data[4:5] == b"\x01" else "2"
            )
            res = w.check(kind if kind in S.KINDS else "msk2", kind, data)
            assert res.status not in C.FAIL_STATUSES, (p.name, res)
            assert res.status == "rejected" or res.failed, (p.name, res)
