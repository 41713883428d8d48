"""pack-tree on Dask: a real LocalCluster of 2 worker processes on 127.0.0.1 (one per module),
the same report and resumability as the local run, URLs, and a worker killed mid-case."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from test_pack_tree_local import Killer, kill_dataset

from medmask import MaskArchive
from medmask.geometry import space_to_affine
from medmask.packing import dask_client, find_cases, heap, pack_tree
from medmask.phantoms import write_phantom_dataset

distributed = pytest.importorskip("distributed")
psutil = pytest.importorskip("psutil")


@pytest.fixture(scope="module")
def client():
    """One LocalCluster (2 worker processes on 127.0.0.1, 1 thread each, no dashboard) for the
    module, started as ``pack-tree --dask`` starts it."""
    with dask_client(workers=2) as c:
        yield c


def test_local_cluster_shape_and_worker_heap(client):
    info = client.scheduler_info()["workers"]
    assert len(info) == 2 and all(w["nthreads"] == 1 for w in info.values())
    assert all(a.startswith("tcp://127.0.0.1:") for a in info)
    # the nanny's MALLOC_TRIM_THRESHOLD_ (which makes every mask array a fresh mmap) is dropped
    env = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
    assert set(env.values()) == {None}


# The probe loads heap.py on its own and allocates plain 10 MiB buffers, without numpy: what a
# process has loaded shapes its heap (numpy's OpenBLAS, or a module imported next to the
# probe, can leave the main arena non-contiguous, and glibc then never trims it, so 10 MiB
# buffers are reused with or without any tuning); the probe is about glibc's settings alone
HEAP_PROBE = """
import importlib.util, resource, sys
spec = importlib.util.spec_from_file_location("heap", sys.argv[1])
heap = importlib.util.module_from_spec(spec)
spec.loader.exec_module(heap)
_reusable_heap = heap._reusable_heap

def faults(n=30):
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        a = bytearray(10 << 20)  # a mask-sized buffer, every page written
        del a
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0

faults(2)
outside = faults()
with _reusable_heap():
    inside = faults()
print(outside, inside)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning")
def test_pinned_trim_threshold_does_not_refault_every_mask():
    """Workers started by any Dask nanny have MALLOC_TRIM_THRESHOLD_ set; while a case is
    packed, mask-sized arrays reuse the heap instead of being mapped and faulted in anew."""
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"}
    r = subprocess.run(
        [sys.executable, "-c", HEAP_PROBE, str(Path(heap.__file__))],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    outside, inside = map(int, r.stdout.split())
    assert outside > 30 * 100  # each 10 MiB array mapped and faulted in anew
    assert inside < outside / 5


def _verify(archive: Path, names: list[str]) -> None:
    with MaskArchive(archive) as ar:
        assert ar.all_names() == names
        for i in range(len(ar)):
            ar.read_cropped(i)


_SOURCES: dict[Path, tuple[np.ndarray, tuple | None, np.ndarray]] = {}


def _source(f: Path) -> tuple[np.ndarray, tuple | None, np.ndarray]:
    """``(z, y, x) array, bounding box of its non-zero voxels, affine`` of a source NIfTI
    (read once per file)."""
    f = f.resolve()
    if f not in _SOURCES:
        img = nib.load(f)
        src = np.asarray(img.dataobj).transpose(2, 1, 0)
        assert set(np.unique(src).tolist()) <= {0, 1}, f"{f}: not a binary mask"
        nz = np.argwhere(src)
        box = None
        if nz.size:
            lo, hi = nz.min(axis=0), nz.max(axis=0) + 1
            box = (int(lo[0]), int(hi[0]), int(lo[1]), int(hi[1]), int(lo[2]), int(hi[2]))
        _SOURCES[f] = src, box, img.affine
    return _SOURCES[f]


def assert_packed_like_sources(archive, folder: Path, storage_options=None) -> None:
    """Every mask of ``archive`` (a path or URL) equals its source ``folder/<name>.nii.gz``
    voxel for voxel (a binary source is stored as a boolean mask), on the source's grid:
    the stored box is the source's box of non-zero voxels and holds the same voxels."""
    files = {f.name.removesuffix(".nii.gz"): f for f in Path(folder).glob("*.nii.gz")}
    with MaskArchive(archive, storage_options=storage_options) as ar:
        assert sorted(ar.all_names()) == sorted(files)
        for name, f in files.items():
            src, box, affine = _source(f)
            crop, stored = ar.read_cropped(name)
            info = ar.info(name)
            assert stored == box and info.mapping == {name: 1} and info.dtype == "bool", name
            if box is not None:
                want = src[box[0] : box[1], box[2] : box[3], box[4] : box[5]].astype(bool)
                assert crop.dtype == np.bool_ and np.array_equal(crop, want), f"{archive}: {name}"
        assert np.allclose(space_to_affine(ar.space), affine, atol=1e-5), archive


def test_dask_report_resume_and_bad_case(client, tmp_path, monkeypatch):
    ds = tmp_path / "ds"
    write_phantom_dataset(ds, n_cases=4, shape_zyx=(10, 12, 12))
    bad = ds / "case_0002" / "segmentations" / "truncated.nii.gz"
    liver = (ds / "case_0002" / "segmentations" / "liver.nii.gz").read_bytes()
    bad.write_bytes(liver[: len(liver) // 2])
    dest = tmp_path / "packed"
    finished = []

    def progress(it):
        for r in it:
            finished.append(r)
            yield r

    monkeypatch.chdir(tmp_path)  # relative paths reach the workers as absolute ones
    report = pack_tree("ds", "packed", client=client, progress=progress)
    assert len(finished) == 4 and report.engine.startswith("dask tcp://127.0.0.1:")
    assert report.results[0].out == str(dest / "case_0000.mska")
    assert [r.status for r in report.results] == ["packed", "packed", "failed", "packed"]
    assert "truncated.nii.gz" in report.failed[0].error
    assert "cannot read" in report.failed[0].error
    assert sorted(p.name for p in dest.iterdir()) == [
        "case_0000.mska",
        "case_0001.mska",
        "case_0003.mska",
    ]
    for c in (0, 1, 3):  # what the workers wrote is what the sources hold
        assert_packed_like_sources(
            dest / f"case_000{c}.mska", ds / f"case_000{c}" / "segmentations"
        )
    bad.unlink()
    again = pack_tree(ds, dest, client=client)
    assert [r.status for r in again.results] == ["skipped", "skipped", "packed", "skipped"]
    assert again.ok and "3 already packed and verified" in again.summary()
    assert_packed_like_sources(dest / "case_0002.mska", ds / "case_0002" / "segmentations")


def test_dask_s3_to_s3(client, s3):
    ds_keys = {}
    root = Path(os.environ.get("TMPDIR", "/tmp")) / f"medmask-dask-s3-{os.getpid()}"
    write_phantom_dataset(root, n_cases=2, shape_zyx=(10, 12, 12))
    try:
        for f in sorted(root.rglob("*.nii.gz")):
            key = f"raw/{f.relative_to(root).as_posix()}"
            ds_keys[key] = s3.put(key, f.read_bytes())
        # the workers were started before the S3 fixture set AWS_* in this process: pass them
        opts = {**s3.storage_options, "key": "testing", "secret": "testing"}
        report = pack_tree(s3.url("raw/"), s3.url("packed/"), client=client, storage_options=opts)
        assert report.ok, report.failed
        assert s3.keys("packed/") == ["packed/case_0000.mska", "packed/case_0001.mska"]
        for c in range(2):  # read back from the store, against the files uploaded
            url = s3.url(f"packed/case_000{c}.mska")
            assert_packed_like_sources(url, root / f"case_000{c}" / "segmentations", opts)
        again = pack_tree(s3.url("raw/"), s3.url("packed/"), client=client, storage_options=opts)
        assert [r.status for r in again.results] == ["skipped", "skipped"]
    finally:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def test_killed_worker_mid_case_is_rescheduled_and_leaves_no_partial_archive(
    client, tmp_path, monkeypatch
):
    from kill_gate import GateByPath

    import medmask.packing.dask_engine

    names = kill_dataset(tmp_path, n_cases=6, n_masks=12)
    dest, gate = tmp_path / "packed", tmp_path / "gate"
    dest.mkdir()
    gate.mkdir()
    # the worker packing case_03 stops after 5 of its 12 masks until it is killed
    monkeypatch.setattr(medmask.packing.dask_engine, "_run_case", GateByPath(gate, "case_03", 5))
    pids = set(client.run(os.getpid).values())
    with Killer(dest, gate, lambda: pids) as killer:
        report = pack_tree(tmp_path / "data", dest, client=client)
    assert killer.problems == [] and len(killer.killed) == 1, killer.problems
    assert killer.killed[0][1].startswith(".case_03.mska.")
    assert report.ok, [r.error for r in report.failed]
    # the held case is packed anew; a case whose result the killed worker held may be run
    # again and find its archive already packed and verified
    statuses = [r.status for r in report.results]
    assert statuses[3] == "packed" and set(statuses) <= {"packed", "skipped"}, statuses
    assert sorted(p.name for p in dest.iterdir()) == [f"case_{c:02d}.mska" for c in range(6)]
    for c in range(6):
        _verify(dest / f"case_{c:02d}.mska", names)
        case = tmp_path / "data" / f"case_{c:02d}" / "segmentations"
        assert_packed_like_sources(dest / f"case_{c:02d}.mska", case)
    # the killed worker's process is gone; the nanny started a new one
    pid = killer.killed[0][0]
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
    client.wait_for_workers(2, timeout=30)


def test_cli_dask_local_cluster_and_existing_cluster(client, tmp_path):
    ds = tmp_path / "ds"
    write_phantom_dataset(ds, n_cases=2, shape_zyx=(10, 12, 12))
    dest = tmp_path / "packed"
    cmd = [sys.executable, "-m", "medmask", "pack-tree", str(ds), "-o", str(dest)]
    r = subprocess.run([*cmd, "--dask", "-w", "2"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "2 packed" in r.stdout and "on dask tcp://127.0.0.1:" in r.stdout
    assert len(find_cases(ds)) == 2 and sorted(p.name for p in dest.iterdir()) == [
        "case_0000.mska",
        "case_0001.mska",
    ]
    for c in range(2):
        assert_packed_like_sources(
            dest / f"case_000{c}.mska", ds / f"case_000{c}" / "segmentations"
        )
    # an existing cluster, by its address (this module's)
    address = client.scheduler.address
    r = subprocess.run(
        [*cmd, "--force", "--dask", address], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert "2 packed" in r.stdout and f"on dask {address}" in r.stdout
    r = subprocess.run(
        [sys.executable, "-m", "medmask", "pack-tree", str(ds), "--dask", str(ds), "-o", "x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "--dask takes a scheduler address" in r.stderr
    env = {**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"}
    r = subprocess.run(
        [*cmd, "--dask", "tcp://127.0.0.1:9"], capture_output=True, text=True, timeout=60, env=env
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in r.stderr


def test_dask_packs_a_mixed_collection(client, tmp_path):
    """DICOM SEGs (one with its CT beside it, two of one absent series, a split series), a
    .seg.nrrd and NIfTI folders, as Dask tasks: what the workers wrote is what the sources
    hold, and a second run skips every case."""
    pytest.importorskip("highdicom")
    from mixed_tree import build_tree, check_packed

    tree = build_tree(tmp_path / "collection")
    report = pack_tree(tree.root, tmp_path / "packed", client=client)
    assert report.ok, [r.error for r in report.failed]
    assert report.skipped_files == {"DICOM files that are not a SEG": tree.ct_files}
    check_packed(tree, tmp_path / "packed")
    again = pack_tree(tree.root, tmp_path / "packed", client=client)
    assert [r.status for r in again.results] == ["skipped"] * len(tree.expected)
