"""Editing archives: add a plain array, delete, replace, set attributes, in modes "a" and
"w", versions 1 and 2; crash safety of deletions and replacements (SIGKILL, I/O errors);
grid mismatches that say what differs."""

from __future__ import annotations

import io
import os
import random
import signal
import time

import numpy as np
import pytest
from reliability import workload as W
from reliability.workload import FORK, SHAPE, SPACE, mask
from spacetransformer import Space

from medmask import MaskArchive, SegmentationMask
from medmask.errors import MaskNotFoundError, MaskValidationError, SpaceMismatchError

CODECS = [None, "zstd"]  # version 2, version 1


def arr(k: int) -> np.ndarray:
    return mask(k).data


def names_and_data(path) -> list[tuple[str, np.ndarray]]:
    with MaskArchive(path) as ar:
        return [(n, ar.read_array(n)) for n in ar.all_names()]


def build(path, ks, codec=None) -> None:
    with MaskArchive(path, "w", space=SPACE, codec=codec) as ar:
        for k in ks:
            ar.add(f"m{k}", mask(k))


# -- add(name, array) ----------------------------------------------------------------------
def test_add_plain_arrays(tmp_path):
    path = tmp_path / "a.mska"
    a = np.zeros(SHAPE, bool)
    a[2:5, 3:7, 1:9] = True
    with MaskArchive(path, "w", space=SPACE) as ar:
        ar.add("bool", a)
        ar.add("zero_one", a.astype(np.uint8))
        ar.add("label3", a, label=3, attrs={"color": [10, 20, 30]})
        labels = a.astype(np.uint8) * 2
        labels[0, 0, 0] = 5
        ar.add("map", labels, mapping={"x": 2, "y": 5})
    with MaskArchive(path) as ar:
        assert ar["bool"].mapping.to_dict() == {"bool": 1} and ar["bool"].data.dtype == bool
        assert np.array_equal(ar.read_array("bool"), a)
        assert ar["zero_one"].mapping.to_dict() == {"zero_one": 1}
        assert np.array_equal(ar.read_array("zero_one"), a)
        three = ar["label3"]
        assert three.mapping.to_dict() == {"label3": 3}
        assert np.array_equal(three.data, a.astype(np.uint8) * 3)
        assert ar.info("label3").attrs == {"color": [10, 20, 30]}
        assert np.array_equal(ar.read_array("map"), labels)
        assert ar["map"].mapping.to_dict() == {"x": 2, "y": 5}


def test_add_refuses_what_it_cannot_place(tmp_path):
    with (
        MaskArchive(tmp_path / "a.mska", "w") as ar,  # no space yet
        pytest.raises(MaskValidationError, match="space="),
    ):
        ar.add("x", np.zeros(SHAPE, bool))
    with MaskArchive(tmp_path / "b.mska", "w", space=SPACE) as ar:
        with pytest.raises(MaskValidationError, match=r"shape \(3, 3, 3\)"):
            ar.add("x", np.zeros((3, 3, 3), bool))
        labels = np.zeros(SHAPE, np.uint8)
        labels[1, 1, 1], labels[2, 2, 2] = 1, 7
        with pytest.raises(MaskValidationError, match="mapping="):
            ar.add("x", labels)
        with pytest.raises(MaskValidationError, match="dtype"):
            ar.add("x", np.zeros(SHAPE, np.float32))
        with pytest.raises(MaskValidationError, match="label"):
            ar.add("x", np.zeros(SHAPE, bool), label=0)
        assert len(ar) == 0


# -- delete / replace / set_attrs ----------------------------------------------------------
@pytest.mark.parametrize("codec", CODECS)
def test_delete_and_replace_in_append_mode_are_durable(tmp_path, codec):
    path = tmp_path / "a.mska"
    build(path, range(5), codec)
    with MaskArchive(path) as old_reader, MaskArchive(path, "a") as ar:
        del ar["m1"]
        ar.delete(-1)  # by position: m4
        ar.replace("m2", mask(20))
        assert ar.all_names() == ["m0", "m2", "m3"]
        assert np.array_equal(ar.read_array("m2"), arr(20))
        assert "m1" not in ar and len(ar) == 3
        with MaskArchive(path) as fresh:  # durable: another handle sees it at once
            assert fresh.all_names() == ["m0", "m2", "m3"]
            assert np.array_equal(fresh.read_array("m2"), arr(20))
        # a reader opened before keeps its snapshot until it refreshes
        assert old_reader.all_names() == [f"m{k}" for k in range(5)]
        assert np.array_equal(old_reader.read_array("m1"), arr(1))
        old_reader.refresh()
        assert old_reader.all_names() == ["m0", "m2", "m3"]
        ar.add("m7", mask(7))  # appends continue after a rewrite
        ar.replace(0, mask(8).data.astype(bool))  # arrays too, by position
    got = names_and_data(path)
    assert [n for n, _ in got] == ["m0", "m2", "m3", "m7"]
    expected = [mask(8).data.astype(bool), arr(20), arr(3), arr(7)]
    for (_n, a), e in zip(got, expected, strict=True):
        assert np.array_equal(a, e)


def test_replace_keeps_or_sets_attributes(tmp_path):
    path = tmp_path / "a.mska"
    with MaskArchive(path, "a", space=SPACE) as ar:
        ar.add("m0", mask(0), attrs={"description": "first"})
        ar.add("m1", mask(1), attrs={"color": [1, 2, 3]})
        ar.replace("m0", mask(3))  # attrs=None keeps them
        ar.replace("m1", mask(4), attrs={})  # {} clears them
        ar.set_attrs("m0", {"description": "edited", "label_value": 7})
        with pytest.raises(MaskValidationError, match="color"):
            ar.set_attrs("m0", {"color": "red"})
    with MaskArchive(path) as ar:
        assert ar.info("m0").attrs == {"description": "edited", "label_value": 7}
        assert ar.info("m1").attrs == {}
        assert np.array_equal(ar.read_array("m0"), arr(3))
        np.testing.assert_allclose(ar.info("m1").centroid, np.argwhere(arr(4)).mean(0), atol=1e-3)


@pytest.mark.parametrize("codec", CODECS)
def test_edits_in_write_mode_change_what_is_written(tmp_path, codec):
    path = tmp_path / "w.mska"
    with MaskArchive(path, "w", space=SPACE, codec=codec) as ar:
        for k in range(4):
            ar.add(f"m{k}", mask(k))
        del ar["m0"]
        ar.replace("m3", mask(9))
        ar.add("m0", mask(0))  # the name is free again
        assert not path.exists()
    got = names_and_data(path)
    assert [n for n, _ in got] == ["m1", "m2", "m3", "m0"]
    assert np.array_equal(got[2][1], arr(9)) and np.array_equal(got[3][1], arr(0))


def test_deleting_every_mask_leaves_an_empty_archive(tmp_path):
    path = tmp_path / "a.mska"
    build(path, range(3))
    with MaskArchive(path, "a") as ar:
        for name in ar.all_names():
            ar.delete(name)
        assert len(ar) == 0
    with MaskArchive(path) as ar:
        assert len(ar) == 0 and ar.space == SPACE
    with MaskArchive(path, "a") as ar:
        ar.add("m5", mask(5))
    assert [n for n, _ in names_and_data(path)] == ["m5"]


def test_editing_errors(tmp_path):
    path = tmp_path / "a.mska"
    build(path, range(2))
    with MaskArchive(path) as ar:
        for op in (lambda: ar.delete("m0"), lambda: ar.replace("m0", mask(1))):
            with pytest.raises(io.UnsupportedOperation):
                op()
        with pytest.raises(io.UnsupportedOperation):
            ar.add("x", arr(0))
    before = path.read_bytes()
    with MaskArchive(path, "a") as ar:
        with pytest.raises(MaskNotFoundError, match="m00"):
            ar.delete("m00")
        with pytest.raises(MaskNotFoundError):
            del ar[5]
        with pytest.raises(MaskValidationError):
            ar.replace("m0", np.zeros((2, 2, 2), bool))
        assert ar.all_names() == ["m0", "m1"]
    assert path.read_bytes() == before


def test_compaction_reclaims_deleted_bytes(tmp_path):
    from medmask.cli import main

    path = tmp_path / "a.mska"
    with MaskArchive(path, "w", space=SPACE) as ar:
        for k in range(6):
            ar.add(
                f"m{k}",
                SegmentationMask(np.random.default_rng(k).random(SHAPE) > 0.5, {f"m{k}": 1}, SPACE),
            )
    full = path.stat().st_size
    with MaskArchive(path, "a") as ar:
        for k in range(5):
            ar.delete(f"m{k}")
    assert path.stat().st_size > full  # deletion only adds a commit
    assert main(["convert", str(path), "-o", str(tmp_path / "c.mska")]) == 0
    assert (tmp_path / "c.mska").stat().st_size < full * 0.6
    assert [n for n, _ in names_and_data(tmp_path / "c.mska")] == ["m5"]


# -- grid mismatches say what differs -------------------------------------------------------
def test_space_mismatch_names_what_differs(tmp_path):
    other = Space(shape=SHAPE[::-1], spacing=(1.0, 1.0, 2.5), origin=(0, 0, 3.0))
    seg = SegmentationMask(arr(0), {"x": 1}, other.reverse_axis_order())
    with MaskArchive(tmp_path / "a.mska", "w", space=SPACE) as ar:
        with pytest.raises(SpaceMismatchError) as err:
            ar.add("x", seg)
        msg = str(err.value)
        assert "spacing (z, y, x) (2.5, 1, 1) instead of (2, 1, 1)" in msg
        assert "origin (LPS world) (0, 0, 3) instead of (0, 0, 0)" in msg
        assert "direction" not in msg and "'x'" in msg
        small = SegmentationMask(np.zeros((2, 3, 4), bool), {"x": 1})
        with pytest.raises(SpaceMismatchError, match=r"shape \(z, y, x\) \(2, 3, 4\) instead"):
            ar.add("x", small)


# -- crash safety ----------------------------------------------------------------------------
def _edit_forever(path: str, state: list, seed: int, conn) -> None:
    """Random adds, deletions and replacements; reports each new state before and after."""
    rng = random.Random(seed)
    counter = 1000 * (seed + 1)
    with MaskArchive(path, "a") as ar:
        while True:
            counter += 1
            r = rng.random()
            new = list(state)
            if len(state) < 3 or r < 0.35:
                new.append((f"n{counter}", counter))
                conn.send(("intent", new))
                ar.add(f"n{counter}", mask(counter))
            elif r < 0.7:
                i = rng.randrange(len(state))
                del new[i]
                conn.send(("intent", new))
                ar.delete(state[i][0])
            else:
                i = rng.randrange(len(state))
                new[i] = (state[i][0], counter)
                conn.send(("intent", new))
                ar.replace(state[i][0], mask(counter))
            state = new
            conn.send(("done", new))


def _matches(path, state) -> bool:
    with MaskArchive(path) as ar:
        if ar.all_names() != [n for n, _ in state]:
            return False
        return all(np.array_equal(ar.read_array(n), arr(k)) for n, k in state)


def _kill_edit_cycles(path, cycles: int, codec) -> dict:
    build(path, range(4), codec)
    state = [(f"m{k}", k) for k in range(4)]
    rng = random.Random(1)
    outcomes = {"old": 0, "new": 0}
    for c in range(cycles):
        parent, child = FORK.Pipe(duplex=False)
        p = FORK.Process(target=_edit_forever, args=(str(path), state, c, child))
        p.start()
        child.close()
        time.sleep(0.05 + rng.random() * 0.1)
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        done, intent = state, None
        while parent.poll():
            try:
                kind, st = parent.recv()
            except EOFError:
                break
            if kind == "done":
                done, intent = st, None
            else:
                intent = st
        parent.close()
        if _matches(path, done):
            state = done
            outcomes["old"] += 1
        else:
            assert intent is not None and _matches(path, intent), (c, done, intent)
            state = intent
            outcomes["new"] += 1
    return outcomes


@pytest.mark.parametrize("codec", CODECS)
def test_sigkill_while_deleting_and_replacing(tmp_path, codec):
    """A child edits in a loop and is killed at a random instant: the archive is always
    readable and holds the state before the interrupted edit or after it."""
    outcomes = _kill_edit_cycles(tmp_path / "a.mska", 12, codec)
    assert sum(outcomes.values()) == 12


@pytest.mark.slow
@pytest.mark.parametrize("codec", CODECS)
def test_sigkill_while_deleting_and_replacing_long(tmp_path, codec):
    outcomes = _kill_edit_cycles(tmp_path / "a.mska", 150, codec)
    assert sum(outcomes.values()) == 150


@pytest.mark.parametrize("op", ["delete", "replace"])
def test_io_error_at_every_write_of_an_edit(tmp_path, op):
    """An I/O error at the n-th write/fsync of a deletion or replacement, for every n:
    the archive holds the old state or (only the last fsync failed) the new one, the
    handle agrees with the file, and the same handle edits fine afterwards."""
    path = tmp_path / "a.mska"
    build(path, range(3))
    old = [("m0", 0), ("m1", 1), ("m2", 2)]
    new = [("m0", 0), ("m2", 2)] if op == "delete" else [("m0", 0), ("m1", 9), ("m2", 2)]
    n = 0
    while True:
        n += 1
        with MaskArchive(path, "a") as ar:
            try:
                with W.io_error_at(n, ("pwrite", "write", "fsync")):
                    ar.delete("m1") if op == "delete" else ar.replace("m1", mask(9))
                failed = False
            except W.InjectedIOError:
                failed = True
            now = [n_ for n_ in ar.all_names()]
            assert _matches(path, old) or _matches(path, new)
            with MaskArchive(path) as fresh:
                assert fresh.all_names() == now
            if not failed:
                break
            if _matches(path, old):  # the same handle recovers
                ar.delete("m1") if op == "delete" else ar.replace("m1", mask(9))
            assert _matches(path, new)
        build(path, range(3))
    assert n > 2
