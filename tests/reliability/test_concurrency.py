"""Readers in other processes (long-lived handles that ``refresh()``, or reopen) and
threads sharing one handle, while a process appends: every mask any of them lists reads
back equal, through every read path; a second writer is refused meanwhile. Both format
versions. (tests/reliability/test_campaign.py covers readers that reopen per round, version 2.)
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from medmask import MaskArchive
from reliability import workload as W


@pytest.mark.parametrize("codec", W.CODECS)
def test_readers_and_threads_while_appending(tmp_path, codec):
    r = W.concurrent_readers(tmp_path / "a.mska", appends=30, readers=2, threads=2, codec=codec)
    assert r["problems"] == [], r
    assert r["appended"] == 30 and r["rounds"] >= 30 * 5 and r["reads"] > r["rounds"], r
    # every commit was listed by a reader that refreshed or reopened after it
    assert r["commits_seen"] == 30, r
    assert r["second_writer_refused"] == r["second_writer_tries"] == 3, r
    assert r["refreshes"] > 0 and r["opens"] > 4, r  # both ways of moving to a new commit


@pytest.mark.slow
@pytest.mark.parametrize("codec", W.CODECS)
def test_readers_and_threads_while_appending_long(tmp_path, codec):
    r = W.concurrent_readers(tmp_path / "a.mska", appends=400, readers=3, threads=3, codec=codec)
    assert r["problems"] == [] and r["commits_seen"] == 400, r


def test_a_refreshing_reader_sees_every_commit_in_order(tmp_path):
    """In one process: a read-only handle refreshed after each append lists exactly the
    masks committed so far (never a partial commit, never one out of order)."""
    path = tmp_path / "a.mska"
    W.make_archive(path, 1)
    with MaskArchive(path) as reader, MaskArchive(path, "a") as writer:
        for k in range(1, 40):
            writer.add_segmask(W.mask(k), f"m{k}")
            assert reader.all_names() == [f"m{j}" for j in range(k)]  # its snapshot
            reader.refresh()
            assert reader.all_names() == [f"m{j}" for j in range(k + 1)]
            assert reader[f"m{k}"] == W.mask(k)


def test_threads_share_one_handle_while_it_is_appended_to(tmp_path):
    """Reads from several threads on the very handle that appends (mode "a")."""
    path = tmp_path / "a.mska"
    W.make_archive(path, 4)
    errors: list[str] = []
    stop = threading.Event()
    with MaskArchive(path, "a") as ar:

        def read() -> None:
            while not stop.is_set():
                names = ar.all_names()
                for name in names[-5:]:
                    try:
                        if not np.array_equal(ar.read_array(name), W.mask(int(name[1:])).data):
                            errors.append(name)
                    except Exception as exc:  # noqa: BLE001
                        errors.append(f"{name}: {type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=read) for _ in range(4)]
        for t in threads:
            t.start()
        for k in range(4, 60):
            ar.add_segmask(W.mask(k), f"m{k}")
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    W.assert_archive(path, range(60))
