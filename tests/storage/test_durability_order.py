"""Durability order of every write path, recorded at the ``os`` level.

``docs/format.md`` states the order: a version-2 commit writes its blobs, space and index
segment after the current end, ``fsync``s the file, writes the *older* commit slot and
``fsync``s again; a whole file (a ``.msk``, a new archive, a version-1 rewrite, every
foreign-format output of :mod:`medmask.io.atomic`) is written to a temporary sibling,
``fsync``ed, renamed (or linked) over its target, and the folder is ``fsync``ed. A SIGKILL
keeps the page cache, so crash tests cannot see a missing ``fsync``; these tests record
every ``os.write``/``os.pwrite``, file-object write and flush, ``os.fsync``, rename, link
and unlink under the test folder, with the file's content as the OS holds it at each
``fsync``, and check that order exactly.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from spacetransformer import Space

import medmask.io.atomic as atomic
from medmask import MaskArchive, MaskFile, SegmentationMask, save_mask
from medmask.io.atomic import write_atomic

SHAPE = (6, 7, 9)
SLOTS = (16, 80)  # offsets of the two commit slots of a version-2 archive


@dataclass
class Event:
    """One recorded call. ``path`` is the file (or folder) it acts on, ``dst`` the new
    name of a rename/link, ``data`` what a write wrote, ``snapshot`` the file's content as
    the OS held it when it was fsynced."""

    op: str
    path: str
    dst: str | None = None
    offset: int | None = None
    data: bytes | None = None
    snapshot: bytes | None = None
    is_dir: bool = False


def _fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}").removesuffix(" (deleted)")


class _File:
    """A file object whose writes and flushes are recorded (what ``os.fdopen`` returns)."""

    def __init__(self, fh, rec: Recorder) -> None:
        self._fh, self._rec = fh, rec

    def write(self, data) -> int:
        n = self._fh.write(data)
        self._rec.add(Event("fwrite", _fd_path(self._fh.fileno()), data=bytes(data)))
        return n

    def flush(self) -> None:
        self._fh.flush()
        self._rec.add(Event("flush", _fd_path(self._fh.fileno())))

    def __getattr__(self, name: str):
        return getattr(self._fh, name)

    def __iter__(self):
        return iter(self._fh)

    def __enter__(self) -> _File:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.__exit__(*exc)


io.IOBase.register(_File)  # libraries test isinstance(fh, io.IOBase) (pynrrd does)


class Recorder:
    """Wraps the ``os`` calls of a write path while active; keeps the events under ``root``."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = str(Path(root).resolve())
        self.events: list[Event] = []
        self._mp = monkeypatch

    def add(self, ev: Event) -> None:
        if ev.path.startswith(self.root) or (ev.dst or "").startswith(self.root):
            self.events.append(ev)

    @contextlib.contextmanager
    def recording(self):
        real = {
            n: getattr(os, n)
            for n in (
                "write",
                "pwrite",
                "fsync",
                "replace",
                "rename",
                "link",
                "unlink",
                "ftruncate",
                "fdopen",
            )
        }

        def write(fd, data):
            n = real["write"](fd, data)
            self.add(Event("write", _fd_path(fd), data=bytes(data[:n])))
            return n

        def pwrite(fd, data, offset):
            n = real["pwrite"](fd, data, offset)
            self.add(Event("write", _fd_path(fd), offset=offset, data=bytes(data[:n])))
            return n

        def fsync(fd):
            path = _fd_path(fd)
            is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
            snapshot = None
            if not is_dir:
                with open(f"/proc/self/fd/{fd}", "rb") as fh:  # what the OS holds now
                    snapshot = fh.read()
            real["fsync"](fd)
            self.add(Event("fsync", path, snapshot=snapshot, is_dir=is_dir))

        def renamer(op):
            def f(src, dst, *a, **kw):
                real[op](src, dst, *a, **kw)
                self.add(Event(op, str(Path(src).resolve()), dst=str(Path(dst).resolve())))

            return f

        def unlink(path, *a, **kw):
            real["unlink"](path, *a, **kw)
            self.add(Event("unlink", str(Path(path).resolve())))

        def ftruncate(fd, length):
            real["ftruncate"](fd, length)
            self.add(Event("ftruncate", _fd_path(fd), offset=length))

        def fdopen(fd, *a, **kw):
            fh = real["fdopen"](fd, *a, **kw)
            return _File(fh, self) if "b" in (a[0] if a else kw.get("mode", "r")) else fh

        with self._mp.context() as mp:
            mp.setattr(os, "write", write)
            mp.setattr(os, "pwrite", pwrite)
            mp.setattr(os, "fsync", fsync)
            mp.setattr(os, "replace", renamer("replace"))
            mp.setattr(os, "rename", renamer("rename"))
            mp.setattr(os, "link", renamer("link"))
            mp.setattr(os, "unlink", unlink)
            mp.setattr(os, "ftruncate", ftruncate)
            mp.setattr(os, "fdopen", fdopen)
            yield self

    def take(self) -> list[Event]:
        out, self.events = self.events, []
        return out


@pytest.fixture
def rec(tmp_path, monkeypatch) -> Recorder:
    return Recorder(tmp_path, monkeypatch)


def describe(events: list[Event]) -> str:
    return "\n".join(
        f"  {e.op} {Path(e.path).name}"
        + (f" -> {Path(e.dst).name}" if e.dst else "")
        + (f" @{e.offset}" if e.offset is not None else "")
        + (f" ({len(e.data)} B)" if e.data is not None else "")
        + (" [folder]" if e.is_dir else "")
        for e in events
    )


# -- the two protocols ----------------------------------------------------------------------
def check_atomic_write(events: list[Event], target: Path, final: bytes) -> None:
    """A whole file put in place: written to a sibling, fsynced with all its bytes, renamed
    (or linked) over ``target``, then the folder fsynced; nothing written afterwards."""
    target = str(Path(target).resolve())
    folder = str(Path(target).parent)
    why = f"\nevents:\n{describe(events)}"
    puts = [
        k for k, e in enumerate(events) if e.op in ("replace", "rename", "link") and e.dst == target
    ]
    assert len(puts) == 1, f"{target} must be put in place by one rename or link{why}"
    put = puts[0]
    tmp = events[put].path
    assert tmp != target and str(Path(tmp).parent) == folder, f"not a sibling: {tmp}{why}"
    syncs = [k for k, e in enumerate(events[:put]) if e.op == "fsync" and e.path == tmp]
    assert syncs, f"the temporary file is renamed without an fsync{why}"
    last = syncs[-1]
    assert events[last].snapshot == final, f"fsync before every byte reached the file{why}"
    written = [k for k, e in enumerate(events) if e.op in ("write", "fwrite") and e.path == tmp]
    assert written and max(written) < last, f"a write after the fsync{why}"
    later = [e for e in events[last + 1 :] if e.op in ("write", "fwrite", "ftruncate")]
    assert not [e for e in later if e.path in (tmp, target)], f"a write after the fsync{why}"
    # the folder is fsynced after the rename, before the next file is put in place
    nxt = next(
        (k for k in range(put + 1, len(events)) if events[k].op in ("replace", "rename", "link")),
        len(events),
    )
    assert any(e.op == "fsync" and e.is_dir and e.path == folder for e in events[put:nxt]), (
        f"the folder is not fsynced after the rename{why}"
    )


def slot_generations(raw: bytes) -> list[int]:
    return [struct.unpack_from("<Q", raw, off)[0] for off in SLOTS]


def check_commit(events: list[Event], path: Path, before: bytes, after: bytes) -> None:
    """One version-2 commit: data after the old end, fsync (with all of it and the slots
    unchanged), the older slot, fsync (with everything); no other write, rename or link."""
    path = str(Path(path).resolve())
    why = f"\nevents:\n{describe(events)}"
    mine = [e for e in events if e.path == path or e.dst == path]
    ops = [e.op for e in mine]
    n = len(ops) - 3
    assert n >= 1 and ops == ["write"] * n + ["fsync", "write", "fsync"], (
        f"a commit is: data writes, fsync, slot write, fsync{why}"
    )
    end = len(before)
    for e in mine[:n]:
        assert e.offset >= end, f"a commit wrote at {e.offset}, before the old end {end}{why}"
    assert mine[n].snapshot == before + after[end:], (
        f"first fsync: data missing or slots touched{why}"
    )
    current = int(np.argmax(slot_generations(before)))
    slot = mine[n + 1]
    assert slot.offset == SLOTS[1 - current] and len(slot.data) == 64, f"not the older slot{why}"
    assert slot_generations(after)[1 - current] == max(slot_generations(before)) + 1
    assert mine[n + 2].snapshot == after, f"second fsync: the slot is not on disk{why}"
    assert all(e.path == path for e in events if e.op != "fsync" or not e.is_dir), why


# -- inputs ---------------------------------------------------------------------------------
def space() -> Space:
    return Space(
        shape=SHAPE[::-1], spacing=(0.8, 0.9, 2.5), origin=(1.0, 2.0, 3.0)
    ).reverse_axis_order()


def mask(k: int) -> SegmentationMask:
    a = np.zeros(SHAPE, bool)
    a[k % 5 : k % 5 + 2, 1 : 3 + k % 4, 2 : 5 + k % 3] = True
    return SegmentationMask(a, {f"m{k}": 1}, space())


def archive(path: Path, n: int, **kw) -> None:
    with MaskArchive(path, "w", **kw) as ar:
        for k in range(n):
            ar.add(f"m{k}", mask(k))


# -- version-2 commits ------------------------------------------------------------------------
#: ``name: (preparation, the recorded edit)``.
EDITS = {
    "append": (None, lambda ar: ar.add("m7", mask(7))),
    # after the preparation the chain has segments of 3 and 1 rows; the append merges the 1
    "append merging segments": (
        lambda ar: ar.add("m6", mask(6)),
        lambda ar: ar.add("m7", mask(7)),
    ),
    "delete": (None, lambda ar: ar.delete("m1")),
    "replace": (None, lambda ar: ar.replace("m0", mask(5).data)),
    "set_attrs": (None, lambda ar: ar.set_attrs("m2", {"color": [1, 2, 3]})),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_v2_commit_writes_data_fsync_older_slot_fsync(tmp_path, rec, edit):
    path = tmp_path / "a.mska"
    archive(path, 3)
    prepare, change = EDITS[edit]
    with MaskArchive(path, "a") as ar:
        if prepare is not None:
            prepare(ar)
        before = path.read_bytes()
        with rec.recording():
            change(ar)
    check_commit(rec.take(), path, before, path.read_bytes())


def test_v2_first_mask_of_an_empty_archive_writes_the_space_before_the_fsync(tmp_path, rec):
    path = tmp_path / "a.mska"
    with MaskArchive(path, "a") as ar:  # created with its empty commit
        before = path.read_bytes()
        with rec.recording():
            ar.add("m0", mask(0))
    check_commit(rec.take(), path, before, path.read_bytes())


@pytest.mark.parametrize("compat", [None, "0.3", "0.2"])
def test_v2_new_archive_is_written_aside_fsynced_renamed_and_folder_fsynced(tmp_path, rec, compat):
    path = tmp_path / "a.mska"
    archive(path, 1)  # replaced: the rename must go over an existing file
    with rec.recording():
        archive(path, 3, compat=compat)
    check_atomic_write(rec.take(), path, path.read_bytes())


def test_v2_archive_created_by_append_mode_is_linked_in_place_then_committed(tmp_path, rec):
    path = tmp_path / "a.mska"
    with rec.recording():
        ar = MaskArchive(path, "a")
    check_atomic_write(rec.take(), path, path.read_bytes())
    with ar:
        before = path.read_bytes()
        with rec.recording():
            ar.add("m0", mask(0))
    check_commit(rec.take(), path, before, path.read_bytes())


# -- whole files: .msk, version-1 archives, foreign formats ------------------------------------
@pytest.mark.parametrize(
    ("codec", "how"),
    [
        (None, "save_mask"),
        (None, "MaskFile"),
        (None, "with attrs"),
        ("zstd", "save_mask"),
        ("zstd", "MaskFile"),
    ],
)
def test_msk_save_is_atomic_and_durable(tmp_path, rec, codec, how):
    path = tmp_path / "m.msk"
    save_mask(mask(1), path, codec=codec)  # replaced
    with rec.recording():
        if how == "MaskFile":
            MaskFile(path, "w", codec=codec).write(mask(2))
        else:
            save_mask(
                mask(2),
                path,
                codec=codec,
                attrs={"color": [9, 9, 9]} if how == "with attrs" else None,
            )
    check_atomic_write(rec.take(), path, path.read_bytes())


@pytest.mark.parametrize("mode", ["w", "a"])
def test_v1_archive_write_and_append_rewrite_atomically(tmp_path, rec, mode):
    path = tmp_path / "a.mska"
    archive(path, 2, codec="zstd")
    with rec.recording():
        if mode == "w":
            archive(path, 3, codec="zstd")
        else:
            with MaskArchive(path, "a") as ar:
                ar.add("m5", mask(5))
    check_atomic_write(rec.take(), path, path.read_bytes())


def test_write_atomic_protocol(tmp_path, rec):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with rec.recording():
        write_atomic(path, lambda fh: (fh.write(b"new "), fh.write(b"content")))
    assert path.read_bytes() == b"new content"
    check_atomic_write(rec.take(), path, b"new content")


@pytest.mark.parametrize("out", ["labels.nii.gz", "seg.seg.nrrd", "folder/"])
def test_foreign_outputs_are_atomic_and_durable(tmp_path, rec, out):
    pytest.importorskip("nibabel")
    if out.endswith(".nrrd"):
        pytest.importorskip("nrrd")
    from medmask.conversions import from_archive

    src = tmp_path / "a.mska"
    archive(src, 3)
    target = tmp_path / out
    with rec.recording():
        from_archive(src, target)
    events = rec.take()
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file() and p != src)
    expected = {"labels.nii.gz": 2, "seg.seg.nrrd": 1, "folder/": 3}[out]  # + X.json
    assert len(files) == expected, files
    for f in files:
        check_atomic_write(events, f, f.read_bytes())


# -- the checks bite ----------------------------------------------------------------------------
def _without(events: list[Event], k: int) -> list[Event]:
    return events[:k] + events[k + 1 :]


def test_check_commit_fails_on_a_missing_or_reordered_step(tmp_path, rec):
    """A real commit's recording, with one step removed or moved, fails the check."""
    path = tmp_path / "a.mska"
    archive(path, 2)
    with MaskArchive(path, "a") as ar:
        before = path.read_bytes()
        with rec.recording():
            ar.add("m4", mask(4))
    events, after = rec.take(), path.read_bytes()
    check_commit(events, path, before, after)
    ops = [e.op for e in events]
    first, last = ops.index("fsync"), len(ops) - 1
    slot = events[first + 1]
    for broken in (
        _without(events, first),  # no fsync before the slot
        _without(events, last),  # no fsync after it
        [*events[:first], slot, events[first], events[last]],  # the slot before the fsync
    ):
        with pytest.raises(AssertionError, match="data writes, fsync, slot write, fsync"):
            check_commit(broken, path, before, after)
    current = Event(
        "write", slot.path, offset=SLOTS[int(np.argmax(slot_generations(before)))], data=slot.data
    )
    with pytest.raises(AssertionError, match="not the older slot"):
        check_commit([*events[: first + 1], current, events[last]], path, before, after)
    early = Event("fsync", events[first].path, snapshot=before)  # fsync before the data landed
    with pytest.raises(AssertionError, match="first fsync"):
        check_commit([*events[:first], early, *events[first + 1 :]], path, before, after)


def test_check_atomic_write_fails_without_the_folder_fsync(tmp_path, rec, monkeypatch):
    monkeypatch.setattr(atomic, "fsync_dir", lambda path: None)
    path = tmp_path / "m.msk"
    with rec.recording():
        save_mask(mask(1), path)
    with pytest.raises(AssertionError, match="folder is not fsynced"):
        check_atomic_write(rec.take(), path, path.read_bytes())


def test_check_atomic_write_fails_on_a_missing_or_early_step(tmp_path, rec):
    """Each step of the recorded protocol removed or moved makes the check fail."""
    path = tmp_path / "out.bin"
    with rec.recording():
        write_atomic(path, lambda fh: (fh.write(b"new "), fh.write(b"content")))
    events = rec.take()
    check_atomic_write(events, path, b"new content")
    ops = [e.op for e in events]
    assert ops[:3] == ["fwrite", "fwrite", "flush"] and ops[3:] == ["fsync", "replace", "fsync"]
    put, sync = ops.index("replace"), ops.index("fsync")
    with pytest.raises(AssertionError, match="renamed without an fsync"):
        check_atomic_write(_without(events, sync), path, b"new content")
    moved = [events[sync], *_without(events, sync)]  # the fsync before the writes
    with pytest.raises(AssertionError, match="fsync before every byte|a write after the fsync"):
        moved[0] = Event("fsync", events[sync].path, snapshot=b"")
        check_atomic_write(moved, path, b"new content")
    with pytest.raises(AssertionError, match="put in place"):
        check_atomic_write(_without(events, put), path, b"new content")
    early = events[:put] + [events[-1], events[put]]  # the folder fsynced before the rename
    with pytest.raises(AssertionError, match="folder is not fsynced"):
        check_atomic_write(early, path, b"new content")
