"""Writers never lose what was stored: lock races, concurrent creation, SIGKILL during
version-1 appends and ``.msk``/``mode="w"`` replacement, disk full (small tmpfs and
RLIMIT_FSIZE), permission denied (also when running as root), I/O errors injected at
every write of a commit.

Complements tests/reliability/test_campaign.py (version-2 SIGKILL cycles, RLIMIT_FSIZE append,
second writer refused) and tests/storage/test_core_api.py.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from medmask import MaskArchive, SegmentationMask, load_mask, save_mask
from medmask.errors import ArchiveLockedError, MaskValidationError
from medmask.format import _io
from reliability import workload as W
from reliability.workload import (
    CODECS,
    FORK,
    SHAPE,
    assert_archive,
    make_archive,
    mask,
    noise,
    run_unprivileged,
    temp_leftovers,
)


# -- locks ---------------------------------------------------------------------------------
@pytest.mark.parametrize("codec", CODECS)
def test_lock_taken_on_a_file_replaced_meanwhile_is_retaken(tmp_path, monkeypatch, codec):
    """A writer opens the archive, another one replaces it (mode "w", or a version-1
    append, both rename a new file into place) before the first takes its lock. The lock
    used to land on the orphaned file, and every later append was silently lost."""
    path = tmp_path / "a.mska"
    make_archive(path, 1, codec)
    real = _io.lock_exclusive
    calls = []

    def racing(fd, p):
        if not calls:
            calls.append(fd)
            monkeypatch.setattr(_io, "lock_exclusive", real)
            make_archive(path, 2, codec, start=10)  # the other writer wins the race
        return real(fd, p)

    monkeypatch.setattr(_io, "lock_exclusive", racing)
    with MaskArchive(path, "a") as ar:
        ar.add("m99", mask(99))
        ar.add("m98", mask(98))
    assert calls
    assert_archive(path, [10, 11, 99, 98])


def _create_and_append(path: str, tag: int, codec, barrier, q) -> None:
    barrier.wait()
    done = []
    try:
        with MaskArchive(path, "a", codec=codec) as ar:
            for j in range(3):
                ar.add(f"m{tag * 10 + j}", mask(tag * 10 + j))
                done.append(tag * 10 + j)
    except ArchiveLockedError:
        pass
    q.put(done)


@pytest.mark.parametrize("codec", CODECS)
def test_two_processes_creating_one_archive_never_lose_a_mask(tmp_path, codec):
    """Both see no file and create it: the second creation used to rename an empty
    archive over the one the first was appending to."""
    lost = []
    for rnd in range(12):
        path = tmp_path / f"r{rnd}.mska"
        barrier, q = FORK.Barrier(2), FORK.Queue()
        procs = [
            FORK.Process(target=_create_and_append, args=(str(path), t, codec, barrier, q))
            for t in (1, 2)
        ]
        for p in procs:
            p.start()
        done = [k for _ in procs for k in q.get(timeout=60)]
        for p in procs:
            p.join()
        with MaskArchive(path) as ar:
            names = set(ar.all_names())
            for k in done:
                if f"m{k}" not in names:
                    lost.append((rnd, k))
                else:
                    assert ar[f"m{k}"] == mask(k)
    assert not lost, f"masks reported stored but missing: {lost}"


@pytest.mark.parametrize("codec", CODECS)
def test_mode_w_does_not_replace_an_archive_created_and_locked_meanwhile(tmp_path, codec):
    path = tmp_path / "a.mska"
    writer = MaskArchive(path, "w", codec=codec)  # no file yet: nothing to lock
    writer.add("m0", mask(0))
    with MaskArchive(path, "a", codec=codec) as appender:  # created and locked meanwhile
        appender.add("m1", mask(1))
        with pytest.raises(ArchiveLockedError):
            writer.close()
        appender.add("m2", mask(2))
    assert_archive(path, [1, 2])
    assert temp_leftovers(tmp_path) == []


@pytest.mark.parametrize("codec", CODECS)
def test_second_writer_refused_in_every_mode(tmp_path, codec):
    path = tmp_path / "a.mska"
    make_archive(path, 2, codec)
    with MaskArchive(path, "a") as ar:
        ar.add("m2", mask(2))
        for mode in ("a", "w"):
            with pytest.raises(ArchiveLockedError, match="another writer"):
                MaskArchive(path, mode, codec=codec)
        ar.add("m3", mask(3))  # the holder is unaffected
    assert_archive(path, range(4))


# -- SIGKILL ---------------------------------------------------------------------------------
def test_sigkill_while_appending_version1(tmp_path):
    """(Version 2 is covered by tests/reliability/test_campaign.py.)"""
    r = W.kill_cycles(tmp_path / "a.mska", 30, "zstd")
    assert r["problems"] == [] and r["masks"] >= r["awaited"] > 30, r


@pytest.mark.slow
@pytest.mark.parametrize("codec", CODECS)
def test_sigkill_while_appending_long(tmp_path, codec):
    r = W.kill_cycles(tmp_path / "a.mska", 400, codec, seed=7)
    assert r["problems"] == [] and r["masks"] >= r["awaited"] >= 400, r


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("kind", ["msk", "mska"])
def test_sigkill_while_replacing(tmp_path, codec, kind):
    """save_mask / mode "w" over an existing file, killed at random: old or new, never torn."""
    r = W.replace_cycles(tmp_path, 12, codec, kind)
    assert r["problems"] == [], r


@pytest.mark.slow
@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("kind", ["msk", "mska"])
def test_sigkill_while_replacing_long(tmp_path, codec, kind):
    r = W.replace_cycles(tmp_path, 200, codec, kind, seed=3)
    assert r["problems"] == [] and r["versions_seen"] == 2, r


# -- failing writes --------------------------------------------------------------------------
@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("mode", ["a", "w", "msk"])
def test_file_size_limit_leaves_the_file_as_it_was(tmp_path, codec, mode):
    """RLIMIT_FSIZE (SIGXFSZ ignored): the write fails with EFBIG, the file is unchanged."""
    path = tmp_path / ("m.msk" if mode == "msk" else "a.mska")
    got, before = W.fsize_limit_case(path, mode, codec)
    assert got == "EFBIG"
    if (
        mode == "a" and codec is None
    ):  # v2 append: committed bytes untouched (tail dropped on next open)
        assert path.read_bytes()[: len(before)] == before
    else:
        assert path.read_bytes() == before
    if mode == "msk":
        assert load_mask(path) == mask(0)
    else:
        assert_archive(path, range(3))
    assert temp_leftovers(tmp_path) == []
    if mode == "a":  # and the archive takes appends again
        with MaskArchive(path, "a") as ar:
            ar.add("m3", mask(3))
        assert_archive(path, range(4))


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 512 KiB tmpfs (root only: skipped elsewhere)."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], capture_output=True
    )
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(folder: Path, leave: int) -> Path:
    """Fill the filesystem of ``folder`` until about ``leave`` bytes are free."""
    filler = folder / "filler"
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    with open(filler, "wb") as fh, contextlib.suppress(OSError):
        fh.write(b"\0" * max(0, free - leave))
    return filler


@pytest.mark.parametrize("codec", CODECS)
def test_disk_full_on_a_small_tmpfs(small_tmpfs, codec):
    """ENOSPC on a real filesystem: appending, replacing (mode "w") and saving a .msk all
    fail with an OSError and leave every file as it was; after space is freed, appends work."""
    arch, single = small_tmpfs / "a.mska", small_tmpfs / "m.msk"
    make_archive(arch, 3, codec)
    save_mask(mask(0), single, codec=codec)
    before_a, before_m = arch.read_bytes(), single.read_bytes()
    filler = fill(small_tmpfs, 1024)
    big = SegmentationMask(np.random.default_rng(3).random((40, 60, 60)) > 0.5, {"n": 1})
    done = []
    with pytest.raises(OSError) as exc, MaskArchive(arch, "a") as ar:  # the n-th append fails
        for j in range(400):  # ~250 bytes each: the disk fills up on the way
            ar.add(f"noise{j}", noise(j))
            done.append(j)
    assert exc.value.errno == errno.ENOSPC
    with MaskArchive(arch) as ar:  # every completed append is there, the failed one is not
        assert ar.all_names() == [f"m{k}" for k in range(3)] + [f"noise{j}" for j in done]
        assert all(ar[f"noise{j}"] == noise(j) for j in done)
    before_a = arch.read_bytes()
    with pytest.raises(OSError), MaskArchive(arch, "w", codec=codec) as ar:
        for j in range(400):
            ar.add(f"noise{j}", noise(j))
    with pytest.raises(OSError):
        save_mask(big, single, codec=codec)
    assert single.read_bytes() == before_m and load_mask(single) == mask(0)
    assert arch.read_bytes() == before_a
    assert temp_leftovers(small_tmpfs) == []
    filler.unlink()
    with MaskArchive(arch, "a") as ar:
        ar.add("m3", mask(3))
    with MaskArchive(arch) as ar:
        assert ar.all_names()[-1] == "m3" and ar["m3"] == mask(3) and len(ar) == 4 + len(done)


@pytest.mark.parametrize("codec", CODECS)
def test_permission_denied_leaves_files_as_they_were(codec):
    with W.unprivileged_folder() as top:
        _permission_denied(top, codec)


def _permission_denied(tmp_path: Path, codec) -> None:
    ro_dir = tmp_path / "ro"
    ro_dir.mkdir()
    arch, single = ro_dir / "a.mska", ro_dir / "m.msk"
    make_archive(arch, 2, codec)
    save_mask(mask(0), single, codec=codec)
    before_a, before_m = arch.read_bytes(), single.read_bytes()
    tmp_path.chmod(0o755)
    ro_dir.chmod(0o555)  # read-only folder (files read-only too)
    arch.chmod(0o444)
    single.chmod(0o444)

    def append() -> None:
        with MaskArchive(arch, "a") as ar:
            ar.add("m5", mask(5))

    def replace() -> None:
        with MaskArchive(arch, "w", codec=codec) as ar:
            ar.add("m5", mask(5))

    def save() -> None:
        save_mask(mask(1), single, codec=codec)

    def create() -> None:
        with MaskArchive(ro_dir / "new.mska", "a", codec=codec) as ar:
            ar.add("m5", mask(5))

    def read() -> None:
        assert_archive(arch, range(2))
        load_mask(single)

    try:
        # the folder is reachable: every refusal below comes from the permissions
        assert run_unprivileged(read) == "no error"
        for fn in (append, replace, save, create):
            assert run_unprivileged(fn) == "PermissionError", fn.__name__
    finally:
        ro_dir.chmod(0o755)
    assert arch.read_bytes() == before_a and single.read_bytes() == before_m
    assert_archive(arch, range(2))
    assert sorted(p.name for p in ro_dir.iterdir()) == ["a.mska", "m.msk"]


@pytest.mark.parametrize("codec", CODECS)
def test_io_error_at_every_write_of_an_append(tmp_path, codec):
    """An I/O error injected at the n-th write/fsync/rename of one append, for every n.
    The append either did not happen (the archive is as before) or, when only the fsync
    after the commit slot failed, is visible; the handle agrees with the file, and the
    same handle appends fine afterwards (a retry must never overwrite what a visible
    commit points at)."""
    path = tmp_path / "a.mska"
    make_archive(path, 2, codec)
    outcomes = []
    n = 0
    while True:
        n += 1
        with MaskArchive(path, "a") as ar:
            stored = len(ar)
            try:
                with W.io_error_at(n):
                    ar.add(f"m{stored}", mask(stored))
                failed = False
            except W.InjectedIOError:
                failed = True
            with MaskArchive(path) as fresh:
                on_disk = fresh.all_names()
            assert on_disk == ar.all_names()
            assert on_disk in (
                [f"m{k}" for k in range(stored)],
                [f"m{k}" for k in range(stored + 1)],
            )
            assert_archive(path, range(len(on_disk)))
            outcomes.append((failed, len(on_disk) - stored))
            if not failed:
                break
            if f"m{stored}" not in ar:
                ar.add(f"m{stored}", mask(stored))  # the same handle recovers
            ar.add(f"m{stored + 1}", mask(stored + 1))
        assert_archive(path, range(stored + 2))
        assert temp_leftovers(tmp_path) == []
    assert n > 2, outcomes  # several distinct write steps were hit
    assert (True, 0) in outcomes  # failures before the commit left nothing


@pytest.mark.parametrize("codec", CODECS)
def test_failed_validation_leaves_the_archive(tmp_path, codec):
    path = tmp_path / "a.mska"
    make_archive(path, 2, codec)
    before = path.read_bytes()
    other = SegmentationMask(np.zeros((3, 3, 3), bool), {"x": 1})
    with MaskArchive(path, "a") as ar:
        with pytest.raises(MaskValidationError):
            ar.add("m2", other)  # another grid
        with pytest.raises(MaskValidationError):
            ar.add("m0", mask(2))  # duplicate name
        with pytest.raises(MaskValidationError):
            ar.add("", mask(2))  # bad name
        with pytest.raises(MaskValidationError):
            ar.add("m2", np.full(SHAPE, 0.5, np.float32))  # not a mask: fractions
        assert path.read_bytes() == before
        ar.add("m2", mask(2))
    assert_archive(path, range(3))
