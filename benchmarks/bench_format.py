"""Size and speed of the storage formats, measured in one run, printed as one table.

Columns: the ``.nii.gz`` files read with nibabel; medmask's version-1 codec
(``codec="zstd"``, the 0.1.x layout); version 2 (the default); and the peers
``crackle-codec`` and ``blosc2`` applied to the multi-label map of the same case
(a peer that is not installed is skipped and the table says so).

Datasets: the real TotalSegmentator case (``../shared/data/totalseg_s0000``, 117
masks) when present, and a generated synthetic set of ``--synthetic`` masks
(default 1,000). Then the open time of a 10,000-mask archive and the
``match_allowed_values`` table (``benchmarks/bench_match.py``).

All figures are medians over ``--repeat`` runs. Usage::

    .venv/bin/python benchmarks/bench_format.py            # or: make bench
    .venv/bin/python benchmarks/bench_format.py --repeat 3 --synthetic 1000 --json out.json

The printed Markdown is also written to ``--out``/bench_format.md (default ``bench_output/``)
with one PNG of bar charts per table beside it (``benchmarks/_plot.py``; needs matplotlib).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
#: The real case (env ``MEDMASK_REAL_CASE`` points elsewhere).
REAL_CASE = Path(
    os.environ.get("MEDMASK_REAL_CASE", HERE.parent.parent / "shared" / "data" / "totalseg_s0000")
)

from _check import require, require_equal  # noqa: E402
from _regions import begin, end  # noqa: E402

from medmask import MaskArchive, SegmentationMask  # noqa: E402
from medmask.inspect import file_info  # noqa: E402
from medmask.spaces import default_space  # noqa: E402

try:
    import nibabel as nib
except ImportError:  # pragma: no cover
    nib = None
try:
    import crackle
except ImportError:
    crackle = None
try:
    import blosc2
except ImportError:
    blosc2 = None

COLUMNS = [
    "nii.gz (nibabel)",
    "v1 (0.1.x zstd)",
    "v2 (bitzstd)",
    "crackle (label map)",
    "blosc2 (label map)",
]


def median_time(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``fn`` over ``repeat`` runs (seconds)."""
    times = []
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def peak_ratio(fn: Callable[[], np.ndarray]) -> float:
    """Peak traced allocation during ``fn`` divided by the size of what it returns."""
    gc.collect()
    tracemalloc.start()
    out = fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / max(out.nbytes, 1)


# -- data ----------------------------------------------------------------------------------------
def load_real(folder: Path):
    from medmask.nifti import affine_to_space

    files = sorted(folder.glob("*.nii.gz"))
    names, arrays, space = [], [], None
    for f in files:
        img = nib.load(str(f))
        if space is None:
            space = affine_to_space(img.affine, img.shape)
        names.append(f.name[: -len(".nii.gz")])
        arrays.append(np.asarray(img.dataobj).transpose(2, 1, 0) != 0)
    return names, arrays, space, files, img.affine


def synthetic(n: int, shape=(96, 128, 128), seed: int = 0):
    """``n`` organ-like masks: ellipsoids of random size and place, a quarter of them empty."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    names, arrays = [], []
    for k in range(n):
        if k % 4 == 3:
            arr = np.zeros(shape, bool)
        else:
            c = [rng.uniform(0.2, 0.8) * s for s in shape]
            r = [rng.uniform(0.03, 0.25) * s for s in shape]
            arr = ((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + (
                (xx - c[2]) / r[2]
            ) ** 2 <= 1
        names.append(f"organ_{k:04d}")
        arrays.append(arr)
    return names, arrays, default_space(shape), None, np.diag([1.0, 1.0, 1.0, 1.0])


def label_map(arrays: list[np.ndarray]) -> np.ndarray:
    dtype = np.uint8 if len(arrays) < 256 else np.uint16
    lab = np.zeros(arrays[0].shape, dtype)
    for k, a in enumerate(arrays):
        lab[a] = k + 1  # later masks win: overlaps are lost in a label map
    return lab


# -- one dataset ---------------------------------------------------------------------------------
def bench_dataset(title: str, data, repeat: int, workdir: Path) -> dict:
    names, arrays, space, nii_files, affine = data
    present = [k for k, a in enumerate(arrays) if a.any()]
    sample = present[:: max(1, len(present) // 25)]  # "read one" is measured over these organs
    res: dict[str, dict[str, object]] = {c: {} for c in COLUMNS}
    segs = [SegmentationMask(a, {n: 1}, space, copy=False) for n, a in zip(names, arrays)]

    # nii.gz ------------------------------------------------------------------------------------
    if nib is not None:
        nii_dir = workdir / f"{title}-nii"
        nii_dir.mkdir()

        def write_nii():
            for n, a in zip(names, arrays):
                nib.save(
                    nib.Nifti1Image(a.transpose(2, 1, 0).astype(np.uint8), affine),
                    str(nii_dir / f"{n}.nii.gz"),
                )

        r = res[COLUMNS[0]]
        write_nii()  # what is timed writes, and reads back, the masks themselves
        for n, a in zip(names, arrays):
            got = np.asanyarray(nib.load(str(nii_dir / f"{n}.nii.gz")).dataobj)
            require_equal(f"{title}: {n}.nii.gz written", got.transpose(2, 1, 0) != 0, a)
        r["pack"] = median_time(write_nii, max(1, min(repeat, 2)))
        files = nii_files or sorted(nii_dir.glob("*.nii.gz"))
        r["size"] = sum(os.path.getsize(f) for f in files)
        r["files"] = len(files)
        by_name = {Path(f).name[: -len(".nii.gz")]: f for f in files}
        for n, a in zip(names, arrays):  # the files timed (the case's own, when given)
            got = np.asanyarray(nib.load(str(by_name[n])).dataobj)
            require_equal(f"{title}: {n}.nii.gz", got.transpose(2, 1, 0) != 0, a)
        r["read_all"] = median_time(
            lambda: [np.asanyarray(nib.load(str(f)).dataobj) for f in files], max(1, min(repeat, 3))
        )
        r["read_one"] = statistics.median(
            median_time(lambda k=k: np.asanyarray(nib.load(str(by_name[names[k]])).dataobj), repeat)
            for k in sample
        )

    # medmask v1 / v2 ---------------------------------------------------------------------------
    for col, codec in ((COLUMNS[1], "zstd"), (COLUMNS[2], None)):
        path = workdir / f"{title}-{codec or 'v2'}.mska"

        def pack(path=path, codec=codec):
            with MaskArchive(path, "w", codec=codec, space=space) as ar:
                for n, s in zip(names, segs):
                    ar.add(n, s)

        def read_all(path=path):
            with MaskArchive(path) as ar:
                return [ar.read_array(i) for i in range(len(ar))]

        pack()  # what is timed gives back the masks, by position and by name
        got = read_all()
        require(len(got) == len(arrays), f"{title}, {col}: {len(got)} masks read back")
        for n, g, a in zip(names, got, arrays):
            require_equal(f"{title}, {col}: {n}", g, a)
        # a whole case of full arrays: freed before timing, or the timed runs would measure
        # an allocator under pressure from the check (2x on "read all")
        del got, g
        gc.collect()
        r = res[col]
        r["pack"] = median_time(pack, repeat)
        r["size"] = os.path.getsize(path)
        r["files"] = 1

        r["read_all"] = median_time(read_all, max(1, min(repeat, 3)) if codec == "zstd" else repeat)

        def open_one(k, path=path):
            with MaskArchive(path) as ar:
                return ar.read_array(names[k])

        r["read_one"] = statistics.median(
            median_time(lambda k=k: open_one(k), repeat) for k in sample
        )
        r["open"] = median_time(lambda path=path: MaskArchive(path).close(), repeat)
        with MaskArchive(path) as ar:
            ratios = [peak_ratio(lambda k=k, ar=ar: ar.read_array(names[k])) for k in sample]
        r["mem_median"] = statistics.median(ratios)
        r["mem_max"] = max(ratios)
        with MaskArchive(path) as ar:  # and after the timed runs, by name
            for n, a in zip(names, arrays):
                require_equal(f"{title}, {col}: {n} after timing", ar.read_array(n), a)
        if codec is None:
            info = file_info(path)
            version = f"{info['version']}.{info['minor_version']}"

    # peers on the label map ----------------------------------------------------------------------
    lab = label_map(arrays)
    overlap = int(sum(int(a.sum()) for a in arrays) - np.count_nonzero(lab))
    peers = []
    if crackle is not None:
        peers.append(
            (
                COLUMNS[3],
                lambda: crackle.compress(lab),
                lambda b: crackle.decompress(b),
                lambda b, v: crackle.decompress(b, label=v),
            )
        )
    else:
        res[COLUMNS[3]]["skipped"] = "crackle-codec not installed"
    if blosc2 is not None:
        cparams = {"codec": blosc2.Codec.ZSTD, "clevel": 9, "filters": [blosc2.Filter.BITSHUFFLE]}
        peers.append(
            (
                COLUMNS[4],
                lambda: blosc2.pack_array2(lab, cparams=cparams),
                lambda b: blosc2.unpack_array2(b),
                lambda b, v: blosc2.unpack_array2(b) == v,
            )
        )
    else:
        res[COLUMNS[4]]["skipped"] = "blosc2 not installed"
    for col, enc, dec, dec_one in peers:
        r = res[col]
        blob = enc()
        path = workdir / f"{title}-{col.split()[0]}.bin"
        path.write_bytes(blob)
        require_equal(f"{title}, {col}: the label map decoded", dec(blob), lab)
        for k in sample:  # what "read one" returns: the organ's voxels in the label map
            require_equal(f"{title}, {col}: label {k + 1}", dec_one(blob, k + 1), lab == k + 1)
        r["pack"] = median_time(enc, repeat)
        r["size"] = len(blob)
        r["files"] = 1

        def read_all(dec=dec, path=path):
            full = dec(path.read_bytes())  # one decode, then one binary array per label
            return [full == k + 1 for k in range(len(arrays))]

        r["read_all"] = median_time(read_all, max(1, min(repeat, 3)))
        r["read_one"] = statistics.median(
            median_time(lambda k=k, f=dec_one, p=path: f(p.read_bytes(), k + 1), repeat)
            for k in sample
        )
        r["note"] = f"label map: {overlap} overlapping voxels lost"
    return {
        "title": title,
        "masks": len(arrays),
        "present": len(present),
        "shape": arrays[0].shape,
        "overlap": overlap,
        "format": version,
        "results": res,
    }


def bench_open_10k(repeat: int, workdir: Path, n: int = 10_000) -> dict:
    """Open time of an archive of ``n`` small masks, and the cost of appending one more."""
    shape = (16, 24, 24)
    space = default_space(shape)
    out = {"masks": n}
    for label, codec in (("v1", "zstd"), ("v2", None)):
        rng = np.random.default_rng(1)  # the same masks in both archives
        path = workdir / f"big-{label}.mska"
        t = time.perf_counter()
        with MaskArchive(path, "w", codec=codec, space=space) as ar:
            for k in range(n):
                arr = np.zeros(shape, bool)
                z = int(rng.integers(0, shape[0] - 2))
                arr[z : z + 2, 3:9, 4:12] = True
                ar.add(f"m{k}", SegmentationMask(arr, {f"m{k}": 1}, space, copy=False))
                if k == n // 2:
                    middle = arr
        build = time.perf_counter() - t
        out[f"{label}_build"] = build

        def open_read(path=path):
            with MaskArchive(path) as ar:
                return ar.read_array(f"m{n // 2}")

        with MaskArchive(path) as ar:  # what is timed opens this archive and reads this mask
            require(len(ar) == n, f"{label} archive of {n} masks: {len(ar)} listed")
        require_equal(f"{label} archive of {n} masks: m{n // 2}", open_read(), middle)
        out[f"{label}_open"] = median_time(lambda path=path: MaskArchive(path).close(), repeat)
        out[f"{label}_open_read"] = median_time(open_read, repeat)
        before = os.path.getsize(path)
        extra = SegmentationMask(np.ones(shape, bool), {"extra": 1}, space)
        added: list[str] = []

        def append_one(path=path, extra=extra, added=added):
            with MaskArchive(path, "a") as ar:
                added.append(f"extra{time.perf_counter_ns()}")
                ar.add(added[-1], extra)

        out[f"{label}_append"] = median_time(append_one, 3)
        out[f"{label}_append_bytes"] = (os.path.getsize(path) - before) / 3
        with MaskArchive(path) as ar:  # the appends were committed, the rest kept
            require(ar.all_names()[n:] == added, f"{label}: appended masks not all listed")
            require_equal(f"{label}: appended mask", ar.read_array(added[-1]), extra.data)
            require_equal(
                f"{label}: m{n // 2} after the appends", ar.read_array(f"m{n // 2}"), middle
            )
    return out


# -- printing ------------------------------------------------------------------------------------
def fmt_bytes(v):
    return f"{v:,}" if isinstance(v, int) else "-"


def fmt_s(v, unit="s"):
    if not isinstance(v, float):
        return "-"
    return f"{v * 1e3:.2f} ms" if unit == "ms" or v < 1 else f"{v:.2f} s"


def print_dataset(d: dict, name: str) -> None:
    """The dataset's table and comparisons, as region ``name`` (quoted by the docs)."""
    res = d["results"]
    print(
        f"\n### {d['title']}: {d['masks']} masks ({d['present']} non-empty), shape (z,y,x) {tuple(d['shape'])}\n"
    )
    print(begin(name))
    cols = [c for c in COLUMNS]
    print("| metric | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    rows = [
        ("files", lambda r: str(r.get("files", "-"))),
        ("size (bytes)", lambda r: fmt_bytes(r.get("size"))),
        ("pack all from arrays", lambda r: fmt_s(r.get("pack"))),
        ("read all as full arrays", lambda r: fmt_s(r.get("read_all"))),
        ("open + read one (median over organs)", lambda r: fmt_s(r.get("read_one"), "ms")),
        (
            "peak memory / output, read one (median, max)",
            lambda r: f"{r['mem_median']:.2f}x, {r['mem_max']:.2f}x" if "mem_median" in r else "-",
        ),
    ]
    for label, f in rows:
        print(
            f"| {label} | "
            + " | ".join(f(res[c]) if "skipped" not in res[c] else "skipped" for c in cols)
            + " |"
        )
    v1, v2, nii = res[COLUMNS[1]], res[COLUMNS[2]], res[COLUMNS[0]]
    print()
    if "size" in v1:
        print(
            f"- v2 vs v1: size {v1['size'] / v2['size']:.2f}x smaller, read all {v1['read_all'] / v2['read_all']:.1f}x faster, "
            f"open+read one {v1['read_one'] / v2['read_one']:.1f}x faster"
        )
    if "size" in nii:
        print(
            f"- v2 vs nii.gz: size {nii['size'] / v2['size']:.1f}x smaller, read all {nii['read_all'] / v2['read_all']:.0f}x faster, "
            f"read one {nii['read_one'] / v2['read_one']:.0f}x faster"
        )
    for c in COLUMNS[3:]:
        if "skipped" in res[c]:
            print(f"- {c}: skipped ({res[c]['skipped']})")
        elif "note" in res[c]:
            print(f"- {c}: {res[c]['note']}")
    print(end(name))


def _sig3(seconds: float) -> str:
    """3 significant digits: ``1.53 s``, ``478 ms``, ``24.5 ms``, ``1.80 ms``."""
    v, unit = (seconds, "s") if seconds >= 1 else (seconds * 1e3, "ms")
    digits = 2 if v < 10 else 1 if v < 100 else 0
    return f"{v:.{digits}f} {unit}"


def print_summary(d: dict, name: str) -> None:
    """The README's short table of the real case (size, read all, read one), region ``name``."""
    import medmask

    res = d["results"]
    cols = [res[c] for c in COLUMNS[:3]]
    if any("size" not in r for r in cols):
        return
    release = ".".join(medmask.__version__.split(".")[:2])
    z, y, x = d["shape"]
    print(begin(name))
    print(
        f"| the {d['masks']} TotalSegmentator masks of one CT ({x}x{y}x{z}) | {d['masks']} "
        f"`.nii.gz` | `.mska` v1 (medmask 0.1.x) | `.mska` v{d['format']} (medmask {release}) |"
    )
    print("| --- | ---: | ---: | ---: |")
    rows = [
        ("bytes on disk", lambda r: f"{r['size']:,}"),
        (f"read all {d['masks']} as full arrays", lambda r: _sig3(r["read_all"])),
        ("open the file and read one organ", lambda r: _sig3(r["read_one"])),
    ]
    for label, f in rows:
        print(f"| {label} | {f(cols[0])} | {f(cols[1])} | **{f(cols[2])}** |")
    print(end(name))


def _picture(path: Path | None) -> None:
    if path is not None:
        print(f"\n![{path.stem}]({path.name})")


# -- pictures -------------------------------------------------------------------------------------
class _Tee:
    """Print to the terminal and keep a copy (the Markdown written beside the pictures)."""

    def __init__(self, stream) -> None:
        self.stream, self.parts = stream, []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def _slug(title: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in title.lower()).strip("_")


def plot_dataset(d: dict, out: Path) -> Path | None:
    """The dataset table as bar charts (log scale; v2 outlined) in ``out``."""
    from _plot import Panel, save_panels

    res = d["results"]

    def col(key):
        return [res[c].get(key) if "skipped" not in res[c] else None for c in COLUMNS]

    panels = [
        Panel("size on disk (log)", COLUMNS, col("size"), unit="B", log=True),
        Panel("read all as full arrays (log)", COLUMNS, col("read_all"), unit="s", log=True),
        Panel("open + read one (log)", COLUMNS, col("read_one"), unit="s", log=True),
    ]
    for p in panels:
        p.highlight = COLUMNS[2]
    title = (
        f"{d['title']}: {d['masks']} masks ({d['present']} non-empty), (z,y,x) {tuple(d['shape'])}"
    )
    return save_panels(title, panels, out / f"bench_format_{_slug(d['title'])}.png")


def plot_big(big: dict, out: Path) -> Path | None:
    """The many-masks archive table as bar charts."""
    from _plot import Panel, save_panels

    labels = ["v1 (0.1.x zstd)", "v2 (bitzstd)"]
    panels = [
        Panel(title, labels, [big.get(f"v1_{key}"), big.get(f"v2_{key}")], unit="s", log=True)
        for key, title in (
            ("open", "open (parse index)"),
            ("open_read", "open + read one"),
            ("append", "append one mask"),
        )
    ]
    return save_panels(f"archive of {big['masks']:,} masks", panels, out / "bench_format_big.png")


def plot_match(rows: list[dict], out: Path) -> Path | None:
    """The match_allowed_values table as bar charts: speed-up over each alternative."""
    from _plot import Panel, save_panels

    labels = [f"{r['map']}, {r['set']}" for r in rows]
    panels = [
        Panel(
            "speed-up over numpy.isin", labels, [r["speedup_isin"] for r in rows], unit="x", ref=1.0
        ),
        Panel(
            "speed-up over the interval method",
            labels,
            [r["speedup_interval"] for r in rows],
            unit="x",
            ref=1.0,
        ),
    ]
    return save_panels("match_allowed_values", panels, out / "bench_format_match.png", cols=2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeat", type=int, default=5, help="runs per measurement (median reported)")
    ap.add_argument(
        "--synthetic", type=int, default=1000, help="number of synthetic masks (0: skip)"
    )
    ap.add_argument(
        "--big", type=int, default=10_000, help="masks in the open-time archive (0: skip)"
    )
    ap.add_argument("--real", type=Path, default=REAL_CASE, help="folder of the real case")
    ap.add_argument("--no-match", action="store_true", help="skip the match_allowed_values table")
    ap.add_argument("--json", type=Path, help="also write all figures to this JSON file")
    ap.add_argument(
        "--out",
        type=Path,
        default=Path("bench_output"),
        help="folder for bench_format.md and its pictures (PNG bar charts of each table)",
    )
    args = ap.parse_args(argv)
    tee = _Tee(sys.stdout)
    sys.stdout = tee
    try:
        return _run(args)
    finally:
        sys.stdout = tee.stream
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_format.md").write_text("".join(tee.parts))


def _run(args: argparse.Namespace) -> int:

    print(
        f"# medmask format benchmark\n\nmachine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, numpy {np.__version__}; figures are medians of {args.repeat} runs"
    )
    report: dict = {"datasets": []}
    work = Path(tempfile.mkdtemp(prefix="medmask-bench-"))
    try:
        if args.real.is_dir() and nib is not None:
            report["datasets"].append(
                bench_dataset("real case totalseg_s0000", load_real(args.real), args.repeat, work)
            )
            print_dataset(report["datasets"][-1], "format-real")
            print("\nThe README's summary of it:\n")
            print_summary(report["datasets"][-1], "format-summary")
            _picture(plot_dataset(report["datasets"][-1], args.out))
        else:
            print(f"\n(real case not found at {args.real}: skipped)")
        if args.synthetic:
            d = bench_dataset(
                f"synthetic {args.synthetic}",
                synthetic(args.synthetic),
                max(1, min(args.repeat, 3)),
                work,
            )
            report["datasets"].append(d)
            print_dataset(d, "format-synthetic")
            _picture(plot_dataset(d, args.out))
        if args.big:
            big = bench_open_10k(args.repeat, work, args.big)
            report["big"] = big
            print(f"\n### archive of {big['masks']:,} masks (16x24x24 each)\n")
            print(begin("format-big"))
            print("| | v1 (0.1.x zstd) | v2 (bitzstd) |\n|---|---|---|")
            for key, label in (
                ("open", "open (parse index)"),
                ("open_read", "open + read one"),
                ("append", "append one mask (open, add, close)"),
                ("build", "build (mode 'w')"),
            ):
                print(f"| {label} | {fmt_s(big['v1_' + key])} | {fmt_s(big['v2_' + key])} |")
            print(
                f"| bytes written per append | {big['v1_append_bytes']:,.0f} | {big['v2_append_bytes']:,.0f} |"
            )
            print(end("format-big"))
            _picture(plot_big(big, args.out))
        if not args.no_match:
            try:
                import bench_match
            except ImportError:
                print("\n(bench_match.py not available: match table skipped)")
            else:
                print("\n### match_allowed_values\n")
                print(begin("format-match"))
                report["match"] = bench_match.main(["--repeat", str(args.repeat)])
                print(end("format-match"))
                if report["match"]:
                    _picture(plot_match(report["match"], args.out))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
