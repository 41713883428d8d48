"""medmask.packing (find, name, pack one case, pack a tree; local pool, URLs) and the fast
NIfTI inflater (medmask.conversions._inflate) it reads through."""

from __future__ import annotations

import gzip
import io
import os
import signal
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medmask import MaskArchive
from medmask.conversions import _inflate
from medmask.conversions.nifti import load_nifti, read_nifti
from medmask.errors import MaskValidationError
from medmask.packing import (
    Case,
    CaseResult,
    already_packed,
    case_name,
    find_cases,
    pack_case,
    pack_tree,
    plan_outputs,
)
from medmask.phantoms import write_phantom_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ds")
    write_phantom_dataset(root, n_cases=3, shape_zyx=(12, 16, 16), layout="mixed")
    return root


def _folder(case) -> Path:
    return Path(case.source) if isinstance(case, Case) else Path(case)


def _names(case) -> list[str]:
    return sorted(p.name[: -len(".nii.gz")] for p in _folder(case).glob("*.nii.gz"))


def _temps(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.tmp"))


# -- finding and naming -----------------------------------------------------------------------
def test_find_cases_name_and_plan(dataset, tmp_path):
    cases = find_cases(dataset)
    assert [case_name(dataset, c) for c in cases] == ["case_0000", "case_0001", "case_0002"]
    assert {c.kind for c in cases} == {"folder"}
    assert _folder(cases[0]).name == "segmentations" and _folder(cases[1]).name == "case_0001"
    alone = find_cases(cases[0].source)
    assert [c.source for c in alone] == [cases[0].source] and alone[0].rel == ""
    assert case_name(cases[0].source, alone[0]) == "case_0000"
    # names that collide once made safe get suffixes, in case order
    for sub in ("a b", "a_b", ".hidden"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "m.nii.gz").write_bytes(b"")
    found = find_cases(tmp_path)
    assert [c.rel for c in found] == ["a b", "a_b"]  # hidden folders skipped
    outs = [Path(o).name for _c, o in plan_outputs(tmp_path, tmp_path / "out", found)]
    assert outs == ["a_b.mska", "a_b-2.mska"]
    with pytest.raises(FileNotFoundError):
        find_cases(tmp_path / "missing")


def test_url_case_names():
    root = "s3://bucket/raw"
    assert case_name(root, "s3://bucket/raw/s01/segmentations") == "s01"
    assert case_name(root + "/", "s3://bucket/raw/site/s02") == "site__s02"
    assert case_name("s3://bucket/raw/s03/segmentations", "s3://bucket/raw/s03/segmentations/") == (
        "s03"
    )
    outs = plan_outputs(root, "s3://bucket/packed/", ["s3://bucket/raw/../x", "s3://bucket/raw/x"])
    assert [o for _c, o in outs] == ["s3://bucket/packed/x.mska", "s3://bucket/packed/x-2.mska"]


# -- one case ---------------------------------------------------------------------------------
def test_pack_case_then_skip_then_repack(dataset, tmp_path):
    case = find_cases(dataset)[1]
    out = tmp_path / "c.mska"
    r = pack_case(case, out)
    assert isinstance(r, CaseResult) and r.status == "packed" and r.masks == len(_names(case))
    assert r.bytes_out == out.stat().st_size and r.bytes_in > 0 and r.error is None
    with MaskArchive(out) as ar:
        assert sorted(ar.all_names()) == _names(case)
        liver = np.asarray(nib.load(_folder(case) / "liver.nii.gz").dataobj).transpose(2, 1, 0)
        np.testing.assert_array_equal(ar["liver"].data, liver.astype(bool))
    assert already_packed(case, out)
    assert pack_case(case, out).status == "skipped"
    assert pack_case(case, out, force=True).status == "packed"
    # a source file newer than the archive: not finished any more
    os.utime(out, (out.stat().st_mtime - 100, out.stat().st_mtime - 100))
    assert not already_packed(case, out)
    # a damaged archive is not finished either
    out.write_bytes(out.read_bytes()[:-10])
    assert not already_packed(case, out) and pack_case(case, out).status == "packed"
    with pytest.raises(MaskValidationError, match=r"\.mska"):
        pack_case(case, tmp_path / "c.msk")


def test_pack_case_failure_leaves_nothing(dataset, tmp_path):
    src = tmp_path / "case"
    src.mkdir()
    good = find_cases(dataset)[1]
    for f in sorted(_folder(good).glob("*.nii.gz"))[:3]:
        (src / f.name).write_bytes(f.read_bytes())
    liver = (_folder(good) / "liver.nii.gz").read_bytes()
    (src / "zz_truncated.nii.gz").write_bytes(liver[: len(liver) // 2])
    out = tmp_path / "out" / "c.mska"
    with pytest.raises(MaskValidationError, match="zz_truncated"):
        pack_case(src, out)
    assert not out.exists() and _temps(out.parent) == []


# -- a tree -----------------------------------------------------------------------------------
@pytest.mark.parametrize("workers", [1, 2])
def test_pack_tree_report_resume_and_bad_case(dataset, tmp_path, workers):
    ds = tmp_path / "ds"
    write_phantom_dataset(ds, n_cases=3, shape_zyx=(10, 12, 12))
    bad = ds / "case_0001" / "segmentations" / "truncated.nii.gz"
    liver = (ds / "case_0001" / "segmentations" / "liver.nii.gz").read_bytes()
    bad.write_bytes(liver[: len(liver) // 2])
    dest = tmp_path / "packed"
    dest.mkdir()
    stale = dest / ".case_0000.mska.k3j4.tmp"  # left by a writer that was killed
    stale.write_bytes(b"partial")
    seen = []

    def progress(it):
        for x in it:
            seen.append(x)
            yield x

    report = pack_tree(ds, dest, workers=workers, progress=progress)
    assert len(seen) == 3
    assert [r.status for r in report.results] == ["packed", "failed", "packed"]
    failed = report.failed[0]
    assert "truncated.nii.gz" in failed.error and "cannot read" in failed.error
    assert failed.traceback.startswith("Traceback") and "MaskValidationError" in failed.traceback
    assert not report.ok and "2 packed" in report.summary() and "1 failed" in report.summary()
    assert sorted(p.name for p in dest.iterdir()) == ["case_0000.mska", "case_0002.mska"]
    assert not stale.exists()
    bad.unlink()
    report = pack_tree(ds, dest, workers=workers)
    assert [r.status for r in report.results] == ["skipped", "packed", "skipped"]
    assert report.ok and "2 already packed and verified" in report.summary()
    with pytest.raises(MaskValidationError, match="folder"):
        pack_tree(ds, tmp_path / "x.mska")
    with pytest.raises(ValueError, match="workers"):
        pack_tree(ds, dest, workers=0)
    with pytest.raises(MaskValidationError, match="no case found"):
        pack_tree(tmp_path / "packed", tmp_path / "p2")


# -- URLs -------------------------------------------------------------------------------------
def _upload_tree(local: Path, put) -> None:
    for f in sorted(local.rglob("*.nii.gz")):
        put(f.relative_to(local).as_posix(), f.read_bytes())


def test_pack_tree_memory_urls(dataset):
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    base = f"memory://medmask-packing-{os.getpid()}"
    _upload_tree(dataset, lambda key, data: fs.pipe(f"{base}/raw/{key}", data))
    try:
        cases = find_cases(f"{base}/raw/")
        assert [case_name(f"{base}/raw/", c) for c in cases] == [
            "case_0000",
            "case_0001",
            "case_0002",
        ]
        report = pack_tree(f"{base}/raw/", f"{base}/packed/", workers=1)
        assert [r.status for r in report.results] == ["packed"] * 3, report.failed
        assert report.results[0].out == f"{base}/packed/case_0000.mska"
        again = pack_tree(f"{base}/raw", f"{base}/packed", workers=1)
        assert [r.status for r in again.results] == ["skipped"] * 3
    finally:
        fs.rm(base.replace("memory://", "/"), recursive=True)


def test_pack_tree_s3_to_s3(dataset, s3, tmp_path):
    _upload_tree(dataset, lambda key, data: s3.put(f"raw/{key}", data))
    s3.put("raw/case_0000/ct.nii.gz", b"not a mask: beside segmentations/, ignored")
    opts = s3.storage_options
    report = pack_tree(s3.url("raw/"), s3.url("packed/"), workers=2, storage_options=opts)
    assert report.ok, report.failed
    assert s3.keys("packed/") == [f"packed/case_000{k}.mska" for k in range(3)]
    local = tmp_path / "c1.mska"
    local.write_bytes(s3.get("packed/case_0001.mska"))
    with MaskArchive(local) as ar:
        assert sorted(ar.all_names()) == _names(find_cases(dataset)[1])
    again = pack_tree(s3.url("raw"), s3.url("packed"), workers=1, storage_options=opts)
    assert [r.status for r in again.results] == ["skipped"] * 3


def test_pack_tree_listing_retries_transient_faults(dataset, s3p):
    """Listing the dataset, each case's files and the outputs goes through medmask's retry
    policy: a 503 on every kind of listing request (list, head) is retried, not fatal."""
    _upload_tree(dataset, lambda key, data: s3p.put(f"raw/{key}", data))
    opts = s3p.storage_options
    for kind in ("503", "reset"):
        s3p.proxy.clear()
        faults = [
            s3p.proxy.add(kind, times=3, method="GET", ranged=False, path_contains="list-type"),
            s3p.proxy.add(kind, times=2, method="HEAD"),
        ]
        report = pack_tree(
            s3p.url("raw/"), s3p.url(f"packed_{kind}/"), workers=1, storage_options=opts
        )
        assert report.ok, report.failed
        assert s3p.keys(f"packed_{kind}/") == [f"packed_{kind}/case_000{k}.mska" for k in range(3)]
        assert [f.hits for f in faults] == [3, 2], kind  # every fault met a request
    s3p.proxy.clear()


# -- the inflater -----------------------------------------------------------------------------
def _variants(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(1)
    mask = (rng.random((23, 17, 11)) > 0.6).astype(np.uint8)
    affine = np.diag([0.8, 0.9, 2.5, 1.0])
    out = []

    def save(name, img):
        p = tmp_path / name
        nib.save(img, p)
        out.append(p)

    save("u8.nii.gz", nib.Nifti1Image(mask, affine))
    save("i16.nii.gz", nib.Nifti1Image(mask.astype(np.int16) * 7, affine))
    big = nib.Nifti1Image(mask.astype(">i2"), affine)
    save("bigendian.nii.gz", big)
    save("nifti2.nii.gz", nib.Nifti2Image(mask, affine))
    ext = nib.Nifti1Image(mask, affine)
    ext.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"a comment" * 50))
    save("extension.nii.gz", ext)
    scaled = nib.Nifti1Image(mask.astype(np.int16), affine)
    scaled.header.set_slope_inter(2.0, 0.0)
    save("scaled.nii.gz", scaled)
    save("plain.nii", nib.Nifti1Image(mask, affine))
    return out


def test_inflater_reads_what_nibabel_reads(tmp_path, monkeypatch):
    for use_stdlib in (False, True):
        if use_stdlib:  # the clean fallback when zlib-ng is not installed
            monkeypatch.setattr(_inflate, "INFLATER", "zlib")
            monkeypatch.setattr(_inflate, "_GZIP", gzip)
        for p in _variants(tmp_path):
            ref = nib.load(p)
            img = load_nifti(p)
            a, b = np.asanyarray(img.dataobj), np.asanyarray(ref.dataobj)
            assert a.dtype == b.dtype and np.array_equal(a, b), p.name
            np.testing.assert_array_equal(img.affine, ref.affine)
            assert type(img) is type(ref), p.name
            assert len(img.header.extensions) == len(ref.header.extensions)


def test_inflater_damage_is_a_clear_error_and_no_fd_leaks(tmp_path):
    p = _variants(tmp_path)[0]
    raw = p.read_bytes()
    cases = {
        "truncated": raw[: len(raw) // 2],
        "crc": raw[:-8] + bytes([raw[-8] ^ 0xFF]) + raw[-7:],
        "length": raw[:-4] + bytes([raw[-4] ^ 1]) + raw[-3:],
        "not_gzip": b"hello, not gzip" * 40,
    }
    fd_dir = Path("/proc/self/fd")
    before = len(list(fd_dir.iterdir())) if fd_dir.is_dir() else None
    for name, data in cases.items():
        bad = tmp_path / f"{name}.nii.gz"
        bad.write_bytes(data)
        with pytest.raises(MaskValidationError, match=f"{name}.nii.gz"):
            read_nifti(bad)
    for _ in range(50):
        read_nifti(p)
    if before is not None:
        assert len(list(fd_dir.iterdir())) <= before
    with pytest.raises(FileNotFoundError):
        read_nifti(tmp_path / "missing.nii.gz")


def test_inflater_inflates_each_file_once(tmp_path, monkeypatch):
    """nibabel tries numpy's memmap first, which seeks to the end: that must not inflate the
    whole stream (and then again from the start)."""
    pytest.importorskip("zlib_ng")
    p = _variants(tmp_path)[0]
    made = []
    real = _inflate._GZIP._GzipReader

    def counting(*args):
        made.append(args)
        return real(*args)

    monkeypatch.setattr(_inflate._GZIP, "_GzipReader", counting)
    data = np.asanyarray(load_nifti(p).dataobj)
    assert data.shape == (23, 17, 11)
    assert len(made) <= 2  # one to sniff the header, one to read
    with pytest.raises(io.UnsupportedOperation):
        _inflate.open_gzip(p).seek(0, io.SEEK_END)


def test_inflater_is_zlib_ng_here():
    pytest.importorskip("zlib_ng")
    assert _inflate.INFLATER == "zlib-ng"


@pytest.mark.realdata
def test_real_case_reads_identically(real_case):
    files = sorted(real_case.glob("*.nii.gz"))[::29]
    for f in files:
        a = np.asanyarray(load_nifti(f).dataobj)
        b = np.asanyarray(nib.load(f).dataobj)
        assert a.dtype == b.dtype and np.array_equal(a, b), f.name


def test_cli_pack_tree_s3(dataset, s3):
    import subprocess
    import sys

    _upload_tree(dataset, lambda key, data: s3.put(f"raw/{key}", data))
    endpoint = s3.storage_options["client_kwargs"]["endpoint_url"]
    cmd = [sys.executable, "-m", "medmask", "pack-tree", s3.url("raw/"), "-o", s3.url("packed/")]
    cmd += ["-w", "1", "--storage-option", f"client_kwargs.endpoint_url={endpoint}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "3 packed" in r.stdout and f"-> s3://{s3.name}/packed/" in r.stdout
    assert s3.keys("packed/") == [f"packed/case_000{k}.mska" for k in range(3)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "3 already packed and verified" in r.stdout


# -- killed workers ---------------------------------------------------------------------------
def kill_dataset(root: Path, n_cases: int, n_masks: int) -> list[str]:
    """``n_cases`` cases of ``n_masks`` small masks (one set of files, linked into every case
    under ``root/data``). Returns the mask names."""
    rng = np.random.default_rng(3)
    src = root / "_files"
    src.mkdir(parents=True)
    names = []
    for k in range(n_masks):
        m = np.zeros((32, 32, 16), np.uint8)
        x, y, z = rng.integers(2, 16, 3)
        m[x : x + 14, y : y + 14, z : z + 4] = 1
        name = f"organ_{k:02d}"
        nib.save(nib.Nifti1Image(m, np.eye(4)), src / f"{name}.nii.gz")
        names.append(name)
    for c in range(n_cases):
        case = root / "data" / f"case_{c:02d}" / "segmentations"
        case.mkdir(parents=True)
        for name in names:
            (case / f"{name}.nii.gz").symlink_to(src / f"{name}.nii.gz")
    return names


class Killer:
    """In a thread: wait for the worker that :mod:`kill_gate` holds mid-case (its
    ``paused-<pid>`` file), check that it is one of ``pids()`` and has the case's unfinished
    archive of ``dest`` open, and SIGKILL it. Event-driven: however fast or slow the cases
    go, the kill lands in the middle of one."""

    def __init__(self, dest: Path, gate: Path, pids) -> None:
        self.dest, self.gate, self.pids = dest, gate, pids
        self.killed: list[tuple[int, str]] = []
        self.problems: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            paused = sorted(self.gate.glob("paused-*"))
            if paused:
                pid = int(paused[0].name.removeprefix("paused-"))
                try:
                    files = [f.path for f in psutil.Process(pid).open_files()]
                except psutil.Error as exc:
                    self.problems.append(f"worker {pid}: {exc}")
                    files = []
                # the case's unfinished archive: a file of dest, or of a staging folder in it
                tmps = [
                    Path(f).relative_to(self.dest).parts[0]
                    for f in files
                    if Path(f).is_relative_to(self.dest)
                    and Path(f).relative_to(self.dest).parts[0].endswith(".tmp")
                ]
                if pid not in self.pids():
                    self.problems.append(f"{pid} is not a worker of this run")
                elif not tmps:
                    self.problems.append(f"worker {pid} holds no unfinished archive: {files}")
                os.kill(pid, signal.SIGKILL)
                self.killed.append((pid, tmps[0] if tmps else ""))
                return
            self._stop.wait(0.005)

    def __enter__(self) -> Killer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def test_local_pool_survives_a_killed_worker(tmp_path, monkeypatch):
    psutil = pytest.importorskip("psutil")
    from kill_gate import GateByPath

    import medmask.packing.local

    names = kill_dataset(tmp_path, n_cases=6, n_masks=12)
    dest, gate = tmp_path / "packed", tmp_path / "gate"
    dest.mkdir()
    gate.mkdir()
    # the worker packing case_03 stops after 5 of its 12 masks until it is killed
    monkeypatch.setattr(medmask.packing.local, "_run_case", GateByPath(gate, "case_03", 5))
    me = psutil.Process()
    with Killer(dest, gate, lambda: [p.pid for p in me.children(recursive=True)]) as killer:
        report = pack_tree(tmp_path / "data", dest, workers=2)
    assert killer.problems == [] and len(killer.killed) == 1, killer.problems
    assert killer.killed[0][1].startswith(".case_03.mska.")
    assert report.ok, [r.error for r in report.failed]
    # the held case is packed anew; a case whose result the killed worker held may be run
    # again and find its archive already packed and verified
    statuses = [r.status for r in report.results]
    assert statuses[3] == "packed" and set(statuses) <= {"packed", "skipped"}, statuses
    assert sorted(p.name for p in dest.iterdir()) == [f"case_{c:02d}.mska" for c in range(6)]
    for c in range(6):
        with MaskArchive(dest / f"case_{c:02d}.mska") as ar:
            assert ar.all_names() == names
