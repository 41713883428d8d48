"""Golden files of every format version and minor (``tests/fixtures/golden/``, made by
``tests/format/make_golden.py``).

* medmask reads every golden file back exactly: arrays, mappings, spaces, attributes and
  what ``info()``/``infos()`` report, against expectations derived from the input arrays;
* the independent spec reader (``spec_v1.py``/``spec_v2.py``) parses the same files, both
  the spec-written ones and the ones medmask wrote, and checks every field the page defines;
* medmask's writer, given the fixed input again, produces the pinned files byte for byte:
  a layout change shows up here, and is made deliberately by regenerating the folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import make_golden as G
import numpy as np
import pytest
import spec_v1
import spec_v2 as S
import zstandard

from medmask import MaskArchive, MaskFile, load_mask
from medmask.format.layouts import LAYOUTS

GOLDEN = G.GOLDEN


def _files(prefix: str) -> list[str]:
    root = GOLDEN / prefix
    return sorted(
        str(p.relative_to(GOLDEN))
        for p in root.rglob("*")
        if p.suffix in (".msk", ".mska") and p.is_file()
    )


SPEC = _files("spec")
PINNED = _files("pinned")
ALL = SPEC + PINNED


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    return G.load_arrays()


def expected(rel: str) -> dict:
    return json.loads((GOLDEN / f"{rel}.json").read_text("utf-8"))


def test_every_version_and_minor_has_golden_files():
    """Both sets cover version 1, ``.msk`` 2.0/2.1 and ``.mska`` 2.0/2.1/2.2/2.3."""
    for prefix in ("spec", "pinned"):
        kinds = {
            (expected(r)["kind"], tuple(expected(r)["version"]))
            for r in ALL
            if r.startswith(prefix)
        }
        assert kinds >= {
            ("msk", (1, 0)),
            ("mska", (1, 0)),
            ("msk", (2, 0)),
            ("msk", (2, 1)),
            ("mska", (2, 0)),
            ("mska", (2, 1)),
            ("mska", (2, 2)),
            ("mska", (2, 3)),
        }, prefix
    assert len(SPEC) == len(G.spec_files(G.make_arrays())) and len(PINNED) == len(
        G.pinned_expected(G.make_arrays())
    )


def test_every_layout_medmask_knows_has_golden_files():
    """Each row of the compatibility table (``medmask.format.layouts.LAYOUTS``) has an archive
    written by the spec writer and one medmask wrote, so a new minor cannot ship without."""
    have = {
        (prefix, tuple(expected(r)["version"]))
        for prefix, rels in (("spec", SPEC), ("pinned", PINNED))
        for r in rels
        if expected(r)["kind"] == "mska"
    }
    missing = [
        f"layout {lay.name} (release {lay.release}): no {prefix}/ archive"
        for lay in LAYOUTS
        for prefix in ("spec", "pinned")
        if (prefix, lay.version) not in have
    ]
    assert missing == [], (
        "format layouts without golden files: "
        + "; ".join(missing)
        + ". Add the layout's cases to tests/format/make_golden.py (a v<major>.<minor>/ folder; "
        "teach the independent writer tests/format/spec_v2.py the layout from docs/format.md), "
        "run `PYTHONPATH=. python -m tests.format.make_golden`, commit the files and say why "
        "(docs/testing.md, 'A golden file for a new format minor')."
    )


def test_inputs_and_expectations_are_what_the_generator_makes(arrays):
    """The checked-in arrays and expected JSON agree with make_golden.py (no hand edits)."""
    made = G.make_arrays()
    assert set(arrays) == set(made)
    for name, a in made.items():
        assert arrays[name].dtype == a.dtype and np.array_equal(arrays[name], a), name
    docs = {f"spec/{k}": d for k, (_raw, d) in G.spec_files(made).items()}
    docs.update({f"pinned/{k}": d for k, d in G.pinned_expected(made).items()})
    for rel, doc in docs.items():
        assert expected(rel) == json.loads(G._dump(doc)), rel


# -- medmask reads every golden file exactly --------------------------------------------------
def assert_space(space, want: dict | None) -> None:
    if want is None:
        assert space is None
        return
    got = {k: [float(v) for v in getattr(space, k)] for k in want}
    assert got == {k: [float(v) for v in vals] for k, vals in want.items()}


def assert_same_array(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape, what
    assert np.array_equal(got, want), f"{what}: {np.count_nonzero(got != want)} voxels differ"


def assert_info(info, m: dict, array: np.ndarray, *, computed_centroid: bool = False) -> None:
    assert info.name == m["name"] or computed_centroid  # a .msk's info is named after the file
    assert info.mapping == m["mapping"]
    assert info.dtype == m["dtype"]
    assert (list(info.bbox) if info.bbox is not None else None) == m["bbox"]
    assert info.voxels == m["voxels"]
    assert info.attrs == m["attrs"]
    if "length" in m:
        assert info.nbytes == m["length"] or computed_centroid
    if m["centroid"] is None and computed_centroid and m["bbox"] is not None:
        # a .msk without a stored centroid: info() computes it from the decoded box
        assert np.allclose(info.centroid, S.centroid_of(array), rtol=0, atol=1e-9)
    else:
        assert (list(info.centroid) if info.centroid is not None else None) == m["centroid"]


@pytest.mark.parametrize("rel", ALL)
def test_medmask_reads_golden_file(rel, arrays):
    doc, path = expected(rel), GOLDEN / rel
    major = doc["version"][0]
    if doc["kind"] == "msk":
        (m,) = doc["masks"]
        seg = load_mask(path)
        assert_same_array(seg.data, arrays[m["array"]], rel)
        assert seg.mapping.to_dict() == m["mapping"]
        assert_space(seg.space, doc["space"])
        if major == 2:
            f = MaskFile(path)
            assert_info(f.info(), m, arrays[m["array"]], computed_centroid=True)
            crop, box, mapping, space = f.read_cropped()
            assert (list(box) if box is not None else None) == m["bbox"]
            if box is not None:
                want = arrays[m["array"]][box[0] : box[1], box[2] : box[3], box[4] : box[5]]
                assert_same_array(crop, want, f"{rel} cropped")
            assert mapping.to_dict() == m["mapping"]
        return
    with MaskArchive(path) as ar:
        assert [ar.version, ar.minor_version] == doc["version"]
        assert ar.all_names() == [m["name"] for m in doc["masks"]]
        assert_space(ar.space, doc["space"])
        assert dict(ar.archive_attrs) == doc.get("archive_attrs", {})
        assert ar.layout.archive_attrs == (doc["version"] == [2, 3])
        if major == 2:
            assert ar.generation == doc["generation"]
            assert ar.index_segments == doc["index_segments"]
            if doc["end_offset"] is not None:
                assert ar.end_offset == doc["end_offset"]
            for info, m in zip(ar.infos(), doc["masks"], strict=True):
                assert_info(info, m, arrays[m["array"]])
        for k, m in enumerate(doc["masks"]):
            for seg in (ar[m["name"]], ar[k]):
                assert_same_array(seg.data, arrays[m["array"]], f"{rel}: {m['name']}")
                assert seg.mapping.to_dict() == m["mapping"]
            if major == 2:
                crop, box = ar.read_cropped(m["name"])
                assert (list(box) if box is not None else None) == m["bbox"]


# -- the spec reader parses every golden file, medmask's included ------------------------------
def on_disk(space_zyx: dict) -> dict:
    """The on-disk ``(x, y, z)`` space of an expected in-memory one."""
    return {
        "shape": space_zyx["shape"][::-1],
        "origin": space_zyx["origin"],
        "spacing": space_zyx["spacing"][::-1],
        "x_orientation": space_zyx["z_orientation"],
        "y_orientation": space_zyx["y_orientation"],
        "z_orientation": space_zyx["x_orientation"],
    }


def check_row(rel: str, row: dict, m: dict, array: np.ndarray) -> None:
    for key in ("name", "mapping", "dtype", "bbox", "voxels", "centroid", "attrs"):
        assert row[key] == m[key], f"{rel}: {m['name']}.{key}: {row[key]!r} != {m[key]!r}"
    if "length" in m:
        assert row["length"] == m["length"]
    if m["bbox"] is None:
        assert (row["offset"], row["length"], row["crc32"]) == (0, 0, 0)


@pytest.mark.parametrize("rel", ALL)
def test_spec_reader_reads_golden_file(rel, arrays):
    spec_check(rel, (GOLDEN / rel).read_bytes(), expected(rel), arrays)


@pytest.mark.parametrize("rel", PINNED)
def test_spec_reader_reads_what_medmask_writes_now(rel, arrays, tmp_path):
    """medmask's writer, run now on the pinned input, checked field by field by the spec
    reader (independently of whether the bytes still equal the pinned ones)."""
    path = tmp_path / Path(rel).name
    G.write_pinned(rel.removeprefix("pinned/"), path, arrays)
    spec_check(rel, path.read_bytes(), expected(rel), arrays)


def spec_check(rel: str, raw: bytes, doc: dict, arrays: dict) -> None:
    """Parse ``raw`` with the spec reader and compare every field with ``doc``."""
    masks = doc["masks"]
    if doc["version"][0] == 1:
        if doc["kind"] == "msk":
            got = spec_v1.read_msk(raw)
            found = {masks[0]["name"]: got["array"]}
            assert got["mapping"] == masks[0]["mapping"]
        else:
            got = spec_v1.read_mska(raw)
            found = got["arrays"]
            assert [e["mapping"] for e in got["entries"]] == [m["mapping"] for m in masks]
        assert got["space"] == on_disk(doc["space"])
        assert list(found) == [m["name"] for m in masks]
        for m in masks:
            assert_same_array(found[m["name"]], arrays[m["array"]], f"{rel}: {m['name']}")
        return
    minor = doc["version"][1]
    if doc["kind"] == "msk":
        got = S.read_msk(raw)
        (m,) = masks
        h, meta = got["header"], got["meta"]
        assert h["minor"] == minor and h["blob_offset"] == 64 + h["meta_length"]
        assert h["blob_offset"] + h["blob_length"] == len(raw), "no bytes after the blob"
        assert meta["space"] == on_disk(doc["space"])
        row = {"name": m["name"], **meta, "length": h["blob_length"], "crc32": h["blob_crc"]}
        row.update(S._check_extra(1, meta.get("extra"), meta["bbox"]))
        row["offset"] = h["blob_offset"] if h["blob_length"] else 0
        check_row(rel, row, m, arrays[m["array"]])
        assert_same_array(got["array"], arrays[m["array"]], rel)
        return
    got = S.read_mska(raw)
    slot = got["slot"]
    assert got["preamble"]["minor"] == minor
    assert slot["generation"] == doc["generation"] and slot["mask_count"] == len(masks)
    if rel.startswith("pinned/"):
        assert slot["end_offset"] == len(raw), "medmask leaves no bytes after the end"
        older = [s for s in got["slots"] if s is not slot][0]
        assert (
            older["valid"]
            and older["generation"] == slot["generation"] - 1
            or (slot["generation"] == 1 and older["generation"] == 0)
        )
    elif doc["end_offset"] is not None:
        assert slot["end_offset"] == doc["end_offset"]
    assert got["space"] == (None if doc["space"] is None else on_disk(doc["space"]))
    assert got["archive_attrs"] == doc.get("archive_attrs", {})
    row_segments = len(got["segments"]) + bool(got["archive_attrs"])
    assert row_segments == doc["index_segments"]
    for seg in got["segments"]:
        assert seg["fields"] == S.FIELDS[minor], "one layout per archive"
        if minor >= 2:  # a bare label exactly when the mapping is the one pair {name: n}
            for r in seg["rows"]:
                bare = isinstance(r[8], dict) and list(r[8]) == [r[0]]
                assert not bare and (type(r[8]) is int) == (r[0] in _ONE_PAIR), r
    if "edits" in rel:  # three appends after the deletion: segments of 4, 2 and 1 rows
        assert [len(s["rows"]) for s in got["segments"]] == [1, 2, 4]
    for row, m in zip(got["rows"], masks, strict=True):
        check_row(rel, row, m, arrays[m["array"]])
        assert_same_array(got["arrays"][m["name"]], arrays[m["array"]], f"{rel}: {m['name']}")


#: Masks whose mapping is ``{own name: n}`` (a 2.2 row writes the bare ``n``).
_ONE_PAIR = {n for n, mp in G.MAPPINGS.items() if list(mp) == [n]}


# -- medmask writes the pinned bytes ----------------------------------------------------------
@pytest.mark.parametrize("rel", [r.removeprefix("pinned/") for r in PINNED])
def test_medmask_writes_pinned_bytes(rel, arrays, tmp_path):
    path = tmp_path / Path(rel).name
    G.write_pinned(rel, path, arrays)
    new, pinned = path.read_bytes(), (GOLDEN / "pinned" / rel).read_bytes()
    if new == pinned:
        return
    at = next(
        (k for k, (a, b) in enumerate(zip(new, pinned)) if a != b), min(len(new), len(pinned))
    )
    pytest.fail(
        f"medmask now writes {rel} differently from tests/fixtures/golden/pinned/{rel}: "
        f"{len(new)} bytes against {len(pinned)}, first difference at byte {at} "
        f"(libzstd {'.'.join(map(str, zstandard.ZSTD_VERSION))}). If the layout change is "
        "deliberate (docs/format.md says so), regenerate with "
        "'PYTHONPATH=. python -m tests.format.make_golden' and commit the diff with the reason."
    )
