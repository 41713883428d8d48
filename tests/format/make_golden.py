"""The golden files of ``tests/fixtures/golden/``: what they hold and how they are made.

Two sets, for every format version and minor (version 1; ``.msk`` 2.0 and 2.1; ``.mska``
2.0, 2.1, 2.2 and 2.3):

* ``spec/``: files written by the independent writers of ``tests/format/spec_v1.py`` and
  ``spec_v2.py`` (from ``docs/format.md`` alone, no medmask code). medmask must read each
  back exactly (``tests/format/test_golden_files.py``).
* ``pinned/``: files medmask itself wrote for the same fixed input. The test writes them
  again and compares byte for byte, so any change of the on-disk layout is a visible diff;
  the spec reader parses them field by field.

Beside every file, ``<file>.json`` holds its expected content, derived here from the input
arrays with numpy (bounding boxes, voxel counts, centroids as the spec defines them), not
read back from the file; the input arrays are ``arrays/<name>.npy``.

Regenerate deliberately (a layout change, a new format minor) from the repository root::

    PYTHONPATH=. python -m tests.format.make_golden            # rewrite every golden file
    PYTHONPATH=. python -m tests.format.make_golden --check    # list what would change

then review ``git diff --stat tests/fixtures/golden`` and say why in the commit message.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # spec_v1 / spec_v2 beside this file

import spec_v1  # noqa: E402
import spec_v2 as S  # noqa: E402

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden"

SHAPE = (5, 6, 11)  # (z, y, x): rows of 11 voxels, so every packed row has padding bits
#: The on-disk space, ``(x, y, z)``: oblique in-plane, the z axis flipped.
SPACE_XYZ = {
    "shape": [SHAPE[2], SHAPE[1], SHAPE[0]],
    "origin": [-10.5, 20.25, 5.0],
    "spacing": [0.8, 0.9, 2.5],
    "x_orientation": [0.6, 0.8, 0.0],
    "y_orientation": [-0.8, 0.6, 0.0],
    "z_orientation": [0.0, 0.0, -1.0],
}
#: The same space as medmask holds it in memory, ``(z, y, x)``.
SPACE_ZYX = {
    "shape": list(SHAPE),
    "origin": SPACE_XYZ["origin"],
    "spacing": SPACE_XYZ["spacing"][::-1],
    "x_orientation": SPACE_XYZ["z_orientation"],
    "y_orientation": SPACE_XYZ["y_orientation"],
    "z_orientation": SPACE_XYZ["x_orientation"],
}

#: Attributes stored with some masks (2.1, 2.2 and ``.msk`` minor 1).
ATTRS = {
    "liver": {
        "color": [200, 40, 30],
        "description": "Leber, große Anteile",
        "category": {"scheme": "SCT", "value": "123037004", "meaning": "Anatomical Structure"},
        "type": {"scheme": "SCT", "value": "10200004", "meaning": "Liver"},
        "label_value": 1,
        "lab_note": {"nested": [1, 2.5, None, True]},
    },
    "empty": {"color": [0, 0, 255]},
    "labels8": {"description": "kidneys and a gland"},
}

#: Archive attributes of the 2.3 files: set, cleared and set again in ``edits.mska``.
ARCHIVE_A = {
    "grid": "segmentation",
    "source": {"PatientID": "p-7", "SeriesInstanceUID": "1.2.826.0.1.3680043.8.498.1"},
}
ARCHIVE_B = {
    "grid": "image",
    "annotated": ["liver", "empty", "gall_bladder"],
    "source": {"PatientID": "p-7", "path": "cases/p-7/seg.dcm", "AlgorithmName": "hand"},
    "lab": {"nested": [1, 2.5, None, True], "Straße": "ü"},
}

#: ``name: (mapping)``; the arrays come from :func:`make_arrays`.
MAPPINGS = {
    "liver": {"liver": 1},
    "spleen": {"spleen": 1},
    "empty": {"empty": 1},
    "full": {"full": 1},
    "vessel": {"artery": 1},  # one pair whose name is not the mask's: no bare label in 2.2
    "single8": {"single8": 5},  # one pair {name: 5}: a bare 5 in 2.2
    "labels8": {"kidney_left": 1, "kidney_right": 2, "gland": 7},
    "labels16": {"a": 300, "b": 65535},
    "labels32": {"big": 70000, "max": 4294967295},
}


def make_arrays() -> dict[str, np.ndarray]:
    """The input masks, from formulas (no random numbers: the same on every numpy)."""
    z, y, x = np.indices(SHAPE)
    arrays = {
        # touches the z borders (0 and 4), y = 0 and x = 10: irregular rows
        "liver": ((z + 2 * y + 3 * x) % 7 < 3) & (x >= 4) & (y <= 4),
        # inside the volume, with holes
        "spleen": ((z * y + x) % 3 != 0)
        & (z >= 1)
        & (z < 4)
        & (y >= 2)
        & (y < 5)
        & (x >= 3)
        & (x < 8),
        "empty": np.zeros(SHAPE, bool),
        "full": np.ones(SHAPE, bool),
        "vessel": (y == 3) & (x == z + 2),
        "single8": np.where((x == 9) & (y >= 1) & (z <= 2), 5, 0).astype(np.uint8),
        "labels8": np.array([0, 1, 2, 7, 0], np.uint8)[(x + 2 * y + 5 * z) % 5] * (x >= 3),
        "labels16": np.array([0, 300, 65535], np.uint16)[(x * y + z) % 3] * (y < 5),
        "labels32": np.array([0, 70000, 4294967295], np.uint32)[(x + y * z) % 3] * (z > 0),
    }
    for name, a in arrays.items():
        assert a.shape == SHAPE, name
        c = S.centroid_of(a)
        # no centroid sits on a rounding tie, so every correct writer rounds it alike
        assert c is None or all(abs((v * S.SCALE) % 1 - 0.5) > 1e-6 for v in c), name
    return arrays


def load_arrays() -> dict[str, np.ndarray]:
    """The checked-in input arrays (``arrays/<name>.npy``)."""
    return {n: np.load(GOLDEN / "arrays" / f"{n}.npy") for n in MAPPINGS}


# -- expected content ----------------------------------------------------------------------------
def stored_centroid(minor: int, array: np.ndarray) -> list[float] | None:
    """The centroid a file of this minor stores (0: none; 1: 4 decimals; 2: 1/10000 units)."""
    c = S.centroid_of(array)
    if c is None or minor == 0:
        return None
    if minor == 1:
        return [round(v, 4) for v in c]
    return [round(v * S.SCALE) / S.SCALE for v in c]


def expect_mask(name: str, arrays: dict, minor: int | None, attrs: bool, **extra) -> dict:
    """What a file of ``minor`` (``None``: version 1) says about mask ``name``."""
    a = arrays[name]
    out = {"name": name, "array": name, "mapping": MAPPINGS[name], "dtype": a.dtype.name}
    if minor is not None:
        out.update(
            bbox=S.bbox_of(a),
            voxels=int(np.count_nonzero(a)),
            centroid=stored_centroid(minor, a),
            attrs=ATTRS.get(name, {}) if attrs else {},
        )
    out.update(extra)
    return out


# -- the cases -----------------------------------------------------------------------------------
#: The edits of the ``edits.mska`` archives: each is one commit (medmask's mode "a" commits
#: every change), starting with the empty commit that creating the file makes. The index
#: chain ends as three segments (4, 2 and 1 rows) after ten commits; ``spleen`` is deleted.
EDITS = [
    ("create", None),
    ("add", "liver"),
    ("add", "spleen"),
    ("add", "empty"),
    ("add", "single8"),
    ("add", "labels8"),
    ("delete", "spleen"),
    ("add", "labels16"),
    ("add", "vessel"),
    ("add", "labels32"),
]
EDITS_FINAL = ["liver", "empty", "single8", "labels8", "labels16", "vessel", "labels32"]
#: The edits of the 2.3 ``edits.mska``: those of :data:`EDITS` and three commits that only
#: change the archive's attributes (set, cleared, set again); it ends with the chain's three
#: row segments and the archive-attributes segment.
EDITS_23 = [
    *EDITS[:2],
    ("attrs", ARCHIVE_A),
    *EDITS[2:8],
    ("attrs", {}),
    EDITS[8],
    ("attrs", ARCHIVE_B),
    EDITS[9],
]
#: The masks of the ``whole.mska`` archives (one commit, as mode "w" writes).
WHOLE = ["full", "labels8", "empty", "liver", "vessel"]
MSK_PLAIN = ["liver", "empty", "labels8", "labels16", "labels32"]  # .msk 2.0
MSK_ATTRS = ["liver", "empty"]  # .msk 2.1 (minor 1)
V1_MSK = ["liver", "labels16"]
V1_MSKA = ["liver", "empty", "labels8", "vessel"]
COMPAT = {0: "0.2", 1: "0.3", 2: "0.4", 3: None}
MINORS = (0, 1, 2, 3)


def _mska_doc(minor: int, names: list, arrays: dict, gen: int, segs: int, end: int | None) -> dict:
    doc = {
        "kind": "mska",
        "version": [2, minor],
        "space": SPACE_ZYX,
        "generation": gen,
        "index_segments": segs,
        "end_offset": end,
        "masks": [expect_mask(n, arrays, minor, minor > 0) for n in names],
    }
    if minor >= 3:
        doc["archive_attrs"] = ARCHIVE_B
        doc["index_segments"] += 1  # the archive-attributes segment
    return doc


def _edits(minor: int) -> list:
    return EDITS_23 if minor >= 3 else EDITS


def spec_files(arrays: dict) -> dict[str, tuple[bytes, dict]]:
    """``{relative path: (bytes, expected)}`` of the files the spec writers make."""
    out: dict[str, tuple[bytes, dict]] = {}
    space_b = S.space_json(SPACE_XYZ)
    for name in V1_MSK:
        raw = spec_v1.spec_msk(arrays[name], MAPPINGS[name], space_b)
        doc = {"kind": "msk", "version": [1, 0], "space": SPACE_ZYX}
        out[f"v1/{name}.msk"] = (raw, {**doc, "masks": [expect_mask(name, arrays, None, False)]})
    items = [(n, arrays[n], MAPPINGS[n]) for n in V1_MSKA]
    doc = {"kind": "mska", "version": [1, 0], "space": SPACE_ZYX}
    out["v1/case.mska"] = (
        spec_v1.spec_mska(items, space_b),
        {**doc, "masks": [expect_mask(n, arrays, None, False) for n in V1_MSKA]},
    )
    for minor, names in ((0, MSK_PLAIN), (1, MSK_ATTRS)):
        for name in names:
            attrs = ATTRS[name] if minor else None
            raw = S.write_msk(arrays[name], MAPPINGS[name], SPACE_XYZ, attrs)
            exp = expect_mask(
                name, arrays, minor, bool(minor), length=len(raw) - 64 - _meta_len(raw)
            )
            doc = {"kind": "msk", "version": [2, minor], "space": SPACE_ZYX, "masks": [exp]}
            out[f"v2.{minor}/{name}{'_attrs' if minor else ''}.msk"] = (raw, doc)
    for minor in MINORS:
        ar = S.SpecArchive(minor, SPACE_XYZ)
        for op, name in _edits(minor):
            if op == "add":
                ar.add(name, arrays[name], MAPPINGS[name], ATTRS.get(name))
            elif op == "delete":
                ar.delete(name)
            elif op == "attrs":
                ar.set_attrs(name)
            ar.commit()
        end = ar.end
        ar.torn_commit()  # a commit torn while its slot was written: invisible
        ar.garbage(b"bytes an interrupted append left after the end" * 2)
        doc = _mska_doc(minor, EDITS_FINAL, arrays, len(_edits(minor)), 3, end)
        _lengths(doc, ar)
        out[f"v2.{minor}/edits.mska"] = (ar.bytes(), doc)

        ar = S.SpecArchive(minor, SPACE_XYZ)
        for name in WHOLE:
            ar.add(name, arrays[name], MAPPINGS[name], ATTRS.get(name))
        if minor >= 3:
            ar.set_attrs(ARCHIVE_B)
        ar.commit()
        doc = _mska_doc(minor, WHOLE, arrays, 1, 1, ar.end)
        _lengths(doc, ar)
        out[f"v2.{minor}/whole.mska"] = (ar.bytes(), doc)
    ar = S.SpecArchive(2, SPACE_XYZ)
    ar.commit()
    out["v2.2/no_masks.mska"] = (ar.bytes(), {**_mska_doc(2, [], arrays, 1, 0, 144), "space": None})
    ar = S.SpecArchive(3, SPACE_XYZ)
    ar.set_attrs(ARCHIVE_B)
    ar.commit()
    out["v2.3/no_masks.mska"] = (
        ar.bytes(),
        {**_mska_doc(3, [], arrays, 1, 0, ar.end), "space": None},
    )
    return out


def _meta_len(raw: bytes) -> int:
    return S.MSK_HEADER.unpack_from(raw)[6]


def _lengths(doc: dict, ar: S.SpecArchive) -> None:
    for m in doc["masks"]:
        m["length"] = ar.rows[m["name"]]["length"]


# -- medmask's writer (pinned files) ------------------------------------------------------------
def _segmask(name: str, arrays: dict):
    from spacetransformer import Space

    from medmask import SegmentationMask

    space = Space.from_json(json.dumps(SPACE_XYZ)).reverse_axis_order()
    return SegmentationMask(arrays[name], MAPPINGS[name], space)


def write_pinned(rel: str, path: Path, arrays: dict) -> None:
    """Write the pinned file ``rel`` (``"v2.1/edits.mska"``...) at ``path`` with medmask."""
    from medmask import MaskArchive, save_mask

    version, base = rel.split("/")
    stem, suffix = base.rsplit(".", 1)
    if version == "v1":
        if suffix == "msk":
            save_mask(_segmask(stem, arrays), path, codec="zstd")
            return
        with MaskArchive(path, "w", codec="zstd") as ar:
            for n in V1_MSKA[:-1]:
                ar.add(n, _segmask(n, arrays))
        with MaskArchive(path, "a") as ar:  # a version-1 append rewrites the file
            ar.add(V1_MSKA[-1], _segmask(V1_MSKA[-1], arrays))
        return
    minor = int(version[-1])
    if suffix == "msk":
        name = stem.removesuffix("_attrs")
        save_mask(_segmask(name, arrays), path, attrs=ATTRS[name] if minor else None)
        return
    compat = COMPAT[minor]
    if stem == "edits":
        for op, name in _edits(minor):
            with MaskArchive(path, "a", compat=compat) as ar:
                if op == "add":
                    ar.add(name, _segmask(name, arrays), attrs=_attrs(minor, name))
                elif op == "delete":
                    ar.delete(name)
                elif op == "attrs":
                    ar.set_archive_attrs(name)
        return
    with MaskArchive(path, "w", compat=compat) as ar:
        for name in WHOLE if stem == "whole" else []:
            ar.add(name, _segmask(name, arrays), attrs=_attrs(minor, name))
        if minor >= 3:
            ar.set_archive_attrs(ARCHIVE_B)


def _attrs(minor: int, name: str) -> dict | None:
    return ATTRS.get(name) if minor else None


def pinned_expected(arrays: dict) -> dict[str, dict]:
    """``{relative path: expected}`` of the pinned files (written by :func:`write_pinned`)."""
    out = {}
    for name in V1_MSK[:1]:
        doc = {"kind": "msk", "version": [1, 0], "space": SPACE_ZYX}
        out[f"v1/{name}.msk"] = {**doc, "masks": [expect_mask(name, arrays, None, False)]}
    doc = {"kind": "mska", "version": [1, 0], "space": SPACE_ZYX}
    out["v1/case.mska"] = {**doc, "masks": [expect_mask(n, arrays, None, False) for n in V1_MSKA]}
    for minor, names in ((0, MSK_PLAIN), (1, MSK_ATTRS)):
        for name in names:
            exp = expect_mask(name, arrays, minor, bool(minor))
            doc = {"kind": "msk", "version": [2, minor], "space": SPACE_ZYX, "masks": [exp]}
            out[f"v2.{minor}/{name}{'_attrs' if minor else ''}.msk"] = doc
    for minor in MINORS:
        edits = len(_edits(minor))
        out[f"v2.{minor}/edits.mska"] = _mska_doc(minor, EDITS_FINAL, arrays, edits, 3, None)
        out[f"v2.{minor}/whole.mska"] = _mska_doc(minor, WHOLE, arrays, 1, 1, None)
    out["v2.2/no_masks.mska"] = {**_mska_doc(2, [], arrays, 1, 0, 144), "space": None}
    out["v2.3/no_masks.mska"] = {**_mska_doc(3, [], arrays, 1, 0, None), "space": None}
    return out


# -- writing the folder --------------------------------------------------------------------------
def build(folder: Path) -> dict[str, bytes]:
    """Every golden file's bytes, ``{path relative to the golden folder: bytes}``."""
    import tempfile

    arrays = make_arrays()
    files: dict[str, bytes] = {}
    for name, a in arrays.items():
        with tempfile.TemporaryFile() as fh:
            np.save(fh, a, allow_pickle=False)
            fh.seek(0)
            files[f"arrays/{name}.npy"] = fh.read()
    for rel, (raw, doc) in spec_files(arrays).items():
        files[f"spec/{rel}"] = raw
        files[f"spec/{rel}.json"] = _dump(doc)
    with tempfile.TemporaryDirectory() as tmp:
        for rel, doc in pinned_expected(arrays).items():
            path = Path(tmp) / rel.replace("/", "_")
            write_pinned(rel, path, arrays)
            files[f"pinned/{rel}"] = path.read_bytes()
            files[f"pinned/{rel}.json"] = _dump(doc)
    return files


def _dump(doc: dict) -> bytes:
    """JSON with one line per top-level key and per mask (readable diffs)."""

    def one(v: object) -> str:
        return json.dumps(v, ensure_ascii=False)

    lines = [f" {one(k)}: {one(v)}," for k, v in doc.items() if k != "masks"]
    masks = ",\n".join(f"  {one(m)}" for m in doc["masks"])
    lines.append(f' "masks": [\n{masks}\n ]' if masks else ' "masks": []')
    return ("{\n" + "\n".join(lines) + "\n}\n").encode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only list what would change")
    args = parser.parse_args(argv)
    files = build(GOLDEN)
    changed = [
        rel
        for rel, raw in files.items()
        if not (GOLDEN / rel).is_file() or (GOLDEN / rel).read_bytes() != raw
    ]
    stale = sorted(
        str(p.relative_to(GOLDEN))
        for p in GOLDEN.rglob("*")
        if p.is_file() and p.name != "README.md" and str(p.relative_to(GOLDEN)) not in files
    )
    for rel in changed:
        print(("would change " if args.check else "wrote ") + rel)
    for rel in stale:
        print(("stale " if args.check else "removed ") + rel)
    if not args.check:
        for rel in changed:
            (GOLDEN / rel).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / rel).write_bytes(files[rel])
        for rel in stale:
            (GOLDEN / rel).unlink()
    print(f"{len(files)} golden files, {len(changed)} changed, {len(stale)} stale", file=sys.stderr)
    return 1 if args.check and (changed or stale) else 0


if __name__ == "__main__":
    raise SystemExit(main())
