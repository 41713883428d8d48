"""Reading masks from object storage: an archive on S3 against ``.nii.gz`` objects.

Starts a local S3 server (moto, 127.0.0.1) and the counting proxy of
``tests/remote_support.py`` in front of it, packs the real case
(``../shared/data/totalseg_s0000``) with ``medmask.nifti.folder_to_archive``, exports
its label map as one multi-label ``.nii.gz``, uploads the archive, the 117 ``.nii.gz``
files and the label map, then measures requests, bytes and time (medians of
``--repeat`` runs, after one warm-up run) for:

* open + one mask (``liver``): ``MaskArchive(url).read_array`` against fetching and
  decoding the organ's ``.nii.gz``;
* a 5-organ label map: ``LoadMaskd`` on the archive URL against the 5 ``.nii.gz``
  objects (fetched concurrently, 8 at a time) and against the multi-label ``.nii.gz``;
* all 117 masks: ``read_all_masks`` against the 117 objects (concurrent) and the
  multi-label ``.nii.gz`` (which cannot hold overlapping masks);

once as the server answers and once with ``--latency`` seconds (20 ms) added to every
request by the proxy, where the number of requests decides. Then a 2-worker
``DataLoader`` over ``--masks`` masks (copies of the case's archive on S3, without
added latency) against the same archives on local disk: masks per second (each mask
cropped to 96^3 in the workers, as training pipelines do, so that moving 10 MB volumes
between processes does not hide the loading).

Requests and bytes are counted at the proxy (every HTTP request and every response
body byte that reaches the client). Times include opening files and decoding.

Run::

    .venv/bin/python benchmarks/bench_remote.py            # writes bench_output/remote.md
    .venv/bin/python benchmarks/bench_remote.py --repeat 3 --masks 500
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
#: The real case (env ``MEDMASK_REAL_CASE`` points elsewhere).
REAL_CASE = Path(
    os.environ.get("MEDMASK_REAL_CASE", REPO.parent / "shared" / "data" / "totalseg_s0000")
)
FIVE = ["liver", "spleen", "kidney_left", "kidney_right", "pancreas"]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from _check import require, require_equal  # noqa: E402
from _regions import region  # noqa: E402


def measure(fn: Callable[[], object], repeat: int, proxy) -> tuple[float, int, int]:
    """Median seconds, and requests and body bytes of one run (counted at the proxy); the
    caller ran ``fn`` once already (its output checked), which warmed it up."""
    times, reqs, nbytes = [], [], []
    for _ in range(repeat):
        proxy.reset_counts()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        reqs.append(proxy.count())
        nbytes.append(proxy.bytes_out())
    return statistics.median(times), int(statistics.median(reqs)), int(statistics.median(nbytes))


class NiftiObjects:
    """Whole-object GETs of ``.nii.gz`` files, ``concurrency`` at a time, then nibabel."""

    def __init__(self, storage_options: dict, bucket: str, concurrency: int = 8) -> None:
        import fsspec.core

        self.fs, _ = fsspec.core.url_to_fs(f"s3://{bucket}/", **storage_options)
        self.bucket = bucket
        self.concurrency = concurrency

    def fetch(self, keys: list[str]) -> list[bytes]:
        from fsspec.asyn import sync

        async def run() -> list[bytes]:
            gate = asyncio.Semaphore(self.concurrency)
            await self.fs.set_session()

            async def one(key: str) -> bytes:
                async with gate:
                    resp = await self.fs._call_s3("get_object", Bucket=self.bucket, Key=key)
                    try:
                        return await resp["Body"].read()
                    finally:
                        resp["Body"].close()

            return list(await asyncio.gather(*(one(k) for k in keys)))

        return sync(self.fs.loop, run)

    def arrays(self, keys: list[str]) -> list[np.ndarray]:
        import nibabel as nib

        out = []
        for raw in self.fetch(keys):
            img = nib.Nifti1Image.from_bytes(gzip.decompress(raw))
            out.append(np.asanyarray(img.dataobj))
        return out


def check_outputs(results: dict, names: list[str], table: dict[str, int]) -> None:
    """What each row reads from S3 is the same: the archive's masks, the ``.nii.gz``
    objects' and the multi-label ``.nii.gz``'s (outside the voxels several masks share,
    which a label map cannot hold).

    Raises:
        OutputsDiffer: A mask or label map differs.
    """
    liver, liver_nii = results["one"]
    require_equal("liver: archive against .nii.gz", liver, np.asarray(liver_nii).T != 0)
    masks, arrays, (lab,) = results["all"]
    require(list(masks) == names, "all masks: the archive lists other names")
    shared = sum(np.asarray(a) != 0 for a in arrays) > 1  # (x, y, z), as the .nii.gz
    five, five_nii, five_ml = results["five"]
    five = np.asarray(five)[0]
    require_equal("5-organ label map: LoadMaskd against 5 .nii.gz", five, five_nii)
    require_equal(
        "5-organ label map: LoadMaskd against the multi-label, outside shared voxels",
        np.where(shared, 0, five),
        np.where(shared, 0, five_ml),
    )
    lab = np.asarray(lab)
    for n, a in zip(names, arrays, strict=True):
        require_equal(
            f"all masks: {n}, archive against .nii.gz", masks[n].data, np.asarray(a).T != 0
        )
        require_equal(
            f"all masks: {n}, multi-label outside shared voxels",
            (lab == table[n]) & ~shared,
            (np.asarray(a) != 0) & ~shared,
        )


def fmt_bytes(n: int) -> str:
    return f"{n / 1e6:,.2f} MB" if n >= 100_000 else f"{n / 1e3:,.1f} kB"


def fmt_s(s: float) -> str:
    return f"{s * 1000:,.0f} ms" if s >= 0.1 else f"{s * 1000:.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", type=Path, default=REAL_CASE, help="folder of .nii.gz masks")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--latency", type=float, default=0.020, help="added seconds per request")
    ap.add_argument("--masks", type=int, default=1000, help="masks in the DataLoader run")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("bench_output") / "remote.md")
    args = ap.parse_args()
    if not args.src.is_dir():
        sys.exit(f"{args.src}: no such folder (the real case); give --src")

    import nibabel as nib
    from monai.transforms import RandSpatialCropd
    from remote_support import FaultProxy, start_s3_server
    from torch.utils.data import DataLoader, Subset

    from medmask import MaskArchive
    from medmask.nifti import archive_to_labelmap, folder_to_archive
    from medmask_monai import LoadMaskd, MaskArchiveDataset

    work = Path(tempfile.mkdtemp(prefix="bench_remote_"))
    server = start_s3_server()
    proxy = FaultProxy((server.host, server.port))
    try:
        t0 = time.perf_counter()
        archive = work / "s0000.mska"
        folder_to_archive(args.src, archive)
        ml = work / "s0000_ml.nii.gz"
        table, _overlap = archive_to_labelmap(archive, ml)
        bucket = server.new_bucket()
        client = server.client()
        client.upload_file(str(archive), bucket, "s0000.mska")
        client.upload_file(str(ml), bucket, "s0000_ml.nii.gz")
        nii = sorted(args.src.glob("*.nii.gz"))
        for f in nii:
            client.upload_file(str(f), bucket, f"nii/s0000/{f.name}")
        n_copies = -(-args.masks // len(nii))
        local_dir = work / "local"
        local_dir.mkdir()
        for i in range(n_copies):
            client.upload_file(str(archive), bucket, f"copies/s{i:04d}.mska")
            shutil.copy(archive, local_dir / f"s{i:04d}.mska")
        print(f"setup {time.perf_counter() - t0:.1f} s", file=sys.stderr)

        so = server.storage_options(proxy.url)
        url = f"s3://{bucket}/s0000.mska"
        objs = NiftiObjects(so, bucket)
        names = [f.name[: -len(".nii.gz")] for f in nii]
        organ_keys = {n: f"nii/s0000/{n}.nii.gz" for n in names}
        labels = {name: i + 1 for i, name in enumerate(FIVE)}

        def mska_one() -> object:
            with MaskArchive(url, storage_options=so) as ar:
                return ar.read_array("liver")

        def nii_one() -> object:
            return objs.arrays([organ_keys["liver"]])[0]

        load5 = LoadMaskd("label", names=labels, storage_options=so)

        def mska_five() -> object:
            return load5({"label": url})["label"]

        def nii_five() -> object:
            arrays = objs.arrays([organ_keys[n] for n in FIVE])
            out = np.zeros(arrays[0].shape, np.uint8)
            for n, a in zip(FIVE, arrays, strict=True):
                out[a > 0] = labels[n]
            return out

        def ml_five() -> object:
            (lab,) = objs.arrays(["s0000_ml.nii.gz"])
            out = np.zeros(lab.shape, np.uint8)
            for n in FIVE:
                out[lab == table[n]] = labels[n]
            return out

        def mska_all() -> object:
            with MaskArchive(url, storage_options=so) as ar:
                return ar.read_all_masks()

        def nii_all() -> object:
            return objs.arrays([organ_keys[n] for n in names])

        def ml_all() -> object:
            return objs.arrays(["s0000_ml.nii.gz"])

        check_outputs(
            {
                "one": (mska_one(), nii_one()),
                "five": (mska_five(), nii_five(), ml_five()),
                "all": (mska_all(), nii_all(), ml_all()),
            },
            names,
            table,
        )
        rows = [
            ("open + one mask (liver)", [("archive", mska_one), ("1 .nii.gz", nii_one)]),
            (
                "5-organ label map",
                [
                    ("archive (LoadMaskd)", mska_five),
                    ("5 .nii.gz", nii_five),
                    ("multi-label .nii.gz", ml_five),
                ],
            ),
            (
                f"all {len(names)} masks",
                [
                    ("archive (read_all_masks)", mska_all),
                    (f"{len(names)} .nii.gz", nii_all),
                    ("multi-label .nii.gz", ml_all),
                ],
            ),
        ]
        lines = [
            "| task | source | requests | bytes | time | time, +"
            f"{args.latency * 1000:.0f} ms/request |",
            "| --- | --- | ---: | ---: | ---: | ---: |",
        ]
        for task, variants in rows:
            for source, fn in variants:
                proxy.set_latency(0)
                t, r, b = measure(fn, args.repeat, proxy)
                proxy.set_latency(args.latency)
                t_lat, r_lat, _ = measure(fn, args.repeat, proxy)
                proxy.set_latency(0)
                lines.append(
                    f"| {task} | {source} | {r} | {fmt_bytes(b)} | {fmt_s(t)} | {fmt_s(t_lat)} |"
                )
                print(lines[-1], file=sys.stderr)

        # DataLoader: masks per second, S3 against local disk
        def loader_rate(targets: list[str], opts: dict | None) -> tuple[float, int]:
            crop = RandSpatialCropd("mask", roi_size=(96, 96, 96), random_size=False)
            ds = MaskArchiveDataset(targets, transform=crop, storage_options=opts)
            sub = Subset(ds, range(min(args.masks, len(ds))))
            dl = DataLoader(
                sub, batch_size=None, num_workers=args.workers, persistent_workers=False
            )
            t = time.perf_counter()
            n = 0
            for item in dl:
                n += 1
                assert item["mask"].ndim == 4
            return n / (time.perf_counter() - t), n

        s3_targets = [f"s3://{bucket}/copies/s{i:04d}.mska" for i in range(n_copies)]
        local_targets = [str(local_dir / f"s{i:04d}.mska") for i in range(n_copies)]
        # the same items from S3 as from disk (whole masks, no crop), before timing
        on_s3 = MaskArchiveDataset(s3_targets[:1], storage_options=so)
        on_disk = MaskArchiveDataset(local_targets[:1])
        require(on_s3.items == on_disk.items, "DataLoader: the datasets list different items")
        for i in range(0, len(on_disk), 7):
            a, b = on_s3[i], on_disk[i]
            require(a["name"] == b["name"], f"DataLoader item {i}: {a['name']} / {b['name']}")
            require_equal(f"DataLoader item {i} ({b['name']}) from S3", a["mask"], b["mask"])
        rates = {"local": [], "s3": []}
        for _ in range(max(1, min(args.repeat, 3))):
            rates["local"].append(loader_rate(local_targets, None)[0])
            proxy.reset_counts()
            rate, n = loader_rate(s3_targets, so)
            rates["s3"].append(rate)
            s3_requests, s3_bytes = proxy.count(), proxy.bytes_out()
        local_rate, s3_rate = (statistics.median(rates[k]) for k in ("local", "s3"))
        dl_lines = [
            f"| DataLoader, {args.workers} workers, {n} masks | masks/s | requests | bytes |",
            "| --- | ---: | ---: | ---: |",
            f"| local disk ({n_copies} archives) | {local_rate:,.0f} | - | - |",
            f"| S3 (same archives) | {s3_rate:,.0f} | {s3_requests} | {fmt_bytes(s3_bytes)} |",
            f"| S3 / local | {s3_rate / local_rate:.2f}x | | |",
        ]
        import monai
        import torch

        head = [
            f"bench_remote.py on {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
            f"{os.cpu_count()} CPUs, Python {platform.python_version()}, torch {torch.__version__}, "
            f"monai {monai.__version__}, nibabel {nib.__version__}; moto S3 on 127.0.0.1 behind "
            f"the counting proxy; medians of {args.repeat} runs "
            f"(DataLoader: {len(rates['s3'])}).",
            "",
            f"Case: {args.src.name} ({len(names)} masks), archive {archive.stat().st_size:,} B, "
            f"117 .nii.gz {sum(f.stat().st_size for f in nii):,} B, multi-label .nii.gz "
            f"{ml.stat().st_size:,} B.",
            "",
        ]
        text = "\n".join([region("remote", "\n".join([*head, *lines, "", *dl_lines])), ""])
        print(text)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    finally:
        proxy.stop()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
