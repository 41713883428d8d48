"""Window reads: ``MaskArchive.read_window`` against nnU-Net's preprocessed label map (issue 18).

On the real TotalSegmentator case (117 masks, 21 non-empty, grid 179x192x294), in one run,
every reader timed on the same random 96³ windows (interleaved window by window), medians:

* the reference: nnU-Net v2's own preprocessed case (``nnUNetDatasetBlosc2.save_case`` with
  the chunks ``comp_blosc2_params`` gives for a 96³ patch: an ``int16`` label map, blosc2
  LZ4HC), opened by ``nnUNetDatasetBlosc2.load_case`` (memory map), the label window sliced;
* medmask's ``MaskArchive.read_window`` on the ``.mska`` that ``medmask pack`` writes: a label
  map of all 117 masks (windows anywhere in the body), 5 organs as a stack of channels
  (overlaps kept), and the largest organ alone (windows centred on its voxels);
* medmask 0.4's public API for the same job (``read_cropped`` of every mask the window meets,
  painted with ``copyto``), to show what the window path saves.

Every medmask window is first checked equal to the reference (the label window, its channels,
or the organ's mask) on ``--check`` windows of each kind. Targets (issue 18): anywhere within
2x of the blosc2 label window, the largest organ no slower than it.

Usage::

    .venv/bin/python benchmarks/bench_window.py                 # ~1 min on 2 cores
    .venv/bin/python benchmarks/bench_window.py --windows 100 --repeat 1

Writes the table to stdout and to ``--out``/bench_window.md (default bench_output/).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _patchcase import (  # noqa: E402
    REAL_CASE,
    largest,
    load_real_case,
    nnunet_normalise,
    nnunet_save,
    publish,
    synthetic_ct,
)
from _regions import region  # noqa: E402
from study_window_layouts import (  # noqa: E402
    check_readers,
    time_readers,
    today_reader,
    window_reader,
    windows_anywhere,
    windows_on,
)

PATCH = 96
#: The organs of the stack rows (the real case's largest structures of the pelvis).
ORGANS = ["hip_left", "hip_right", "sacrum", "urinary_bladder", "gluteus_maximus_left"]


def cut(w: tuple) -> tuple[slice, ...]:
    """The slices of a window ``(z0, z1, y0, y1, x0, x1)``."""
    return slice(w[0], w[1]), slice(w[2], w[3]), slice(w[4], w[5])


def run(args: argparse.Namespace, work: Path) -> list[str]:
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

    from medmask import MaskArchive
    from medmask.nifti import folder_to_archive

    case = load_real_case(args.real)
    mska = work / "case.mska"
    folder_to_archive(args.real, mska)
    seg = case.label_map(dtype=np.int16)
    written = nnunet_save(
        work / "nn", "case", nnunet_normalise(synthetic_ct(case), seg), seg, 117, PATCH, False
    )
    b2nd = Path(written[1]).stat().st_size  # the _seg.b2nd
    _data, seg_b2, _, _ = nnUNetDatasetBlosc2(str(work / "nn")).load_case("case")
    ar = MaskArchive(mska)
    big = largest(case)
    organ = case.full(big)
    rng = np.random.default_rng(args.seed)
    anywhere = windows_anywhere(case.shape, args.windows, rng)  # (z0, z1, y0, y1, x0, x1)
    on_big = windows_on(case, big, args.windows, rng)
    b2 = {"blosc2": lambda w, names=None: seg_b2[0, w[0] : w[1], w[2] : w[3], w[4] : w[5]]}
    new, old = window_reader(mska), today_reader(mska)
    label_map = {"read_window": new, "0.4 API": old}
    stack = {"read_window stack": lambda w, names=None: ar.read_window(cut(w), ORGANS, "stack")}
    alone = {
        "read_window organ": lambda w, names=None: new(w, [big]),
        "0.4 API organ": lambda w, names=None: old(w, [big]),
    }
    n = min(args.check, args.windows)
    ref = lambda w: np.asarray(b2["blosc2"](w)).astype(np.uint8)  # noqa: E731
    check_readers(label_map, anywhere[:n], None, ref)
    fulls = [case.full(n) for n in ORGANS]  # the stack keeps overlaps: its own masks
    check_readers(stack, anywhere[:n], None, lambda w: np.stack([f[cut(w)] for f in fulls]))
    check_readers(alone, on_big[:n], None, lambda w: organ[cut(w)].astype(np.uint8))
    t_any = time_readers({**b2, **label_map, **stack}, anywhere, None, args.repeat, "anywhere")
    t_org = time_readers({**b2, **alone}, on_big, None, args.repeat, f"on {big}")
    for fn in (new, old, ar):
        fn.close()
    return report(args, case, mska, b2nd, t_any, t_org, big)


def report(args, case, mska, b2nd, t_any, t_org, big) -> list[str]:
    ms = lambda s: f"{s * 1e3:.3f} ms"  # noqa: E731
    ra, ro = t_any["blosc2"], t_org["blosc2"]
    rows = [
        (
            "nnU-Net `_seg.b2nd` label window (the reference)",
            t_any["blosc2"],
            ra,
            t_org["blosc2"],
            ro,
        ),
        (
            "**medmask `read_window`**, label map of all 117 masks",
            t_any["read_window"],
            ra,
            None,
            None,
        ),
        (f"**medmask `read_window`**, {big} alone", None, None, t_org["read_window organ"], ro),
        (
            f"medmask `read_window`, {len(ORGANS)} organs as a stack (overlaps kept)",
            t_any["read_window stack"],
            ra,
            None,
            None,
        ),
        (
            "medmask 0.4 API: `read_cropped` of each mask met + `copyto`",
            t_any["0.4 API"],
            ra,
            t_org["0.4 API organ"],
            ro,
        ),
    ]
    head = (
        f"machine: {platform.machine()}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f}, Python {platform.python_version()}, numpy {np.__version__}; "
        f"real case {args.real.name} (grid (z, y, x) {case.shape}, {len(case.names)} masks); "
        f"96³ windows, medians over {args.windows} windows x {args.repeat} passes, readers "
        f"interleaved; every medmask window checked equal to the reference on "
        f"{min(args.check, args.windows)} windows of each kind first."
    )
    table = [
        f"| reader | window anywhere | vs blosc2 | window on {big} | vs blosc2 |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for text, a, ba, o, bo in rows:
        cells = [ms(a) if a is not None else "", f"{a / ba:.2f}x" if a is not None else ""]
        cells += [ms(o) if o is not None else "", f"{o / bo:.2f}x" if o is not None else ""]
        table.append(f"| {text} | " + " | ".join(cells) + " |")
    r_any, r_org = t_any["read_window"] / ra, t_org["read_window organ"] / ro
    ok_any, ok_org = r_any <= 2, r_org <= 1
    sizes = (
        f"Stored: the `.mska` of all {len(case.names)} masks {mska.stat().st_size:,} B, "
        f"nnU-Net's `_seg.b2nd` {b2nd:,} B (one label per voxel)."
    )
    targets = (
        f"Targets (issue 18): anywhere <= 2x of the blosc2 label window: {r_any:.2f}x "
        f"({'met' if ok_any else 'MISSED'}); the largest organ <= 1x: {r_org:.2f}x "
        f"({'met' if ok_org else 'MISSED'})."
    )
    body = "\n".join([head, "", *table, "", sizes, "", targets])
    return ["# Window reads (`benchmarks/bench_window.py`)", "", region("window", body)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--real", type=Path, default=REAL_CASE, help="folder of the real case")
    ap.add_argument(
        "--windows", type=int, default=300, help="random windows per kind (default 300)"
    )
    ap.add_argument(
        "--repeat", type=int, default=3, help="timed passes over the windows (default 3)"
    )
    ap.add_argument(
        "--check", type=int, default=40, help="windows checked equal first (default 40)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("bench_output"), help="folder for the .md")
    args = ap.parse_args(argv)
    if not args.real.is_dir():
        print(f"real case not found at {args.real}: nothing to measure")
        return 1
    work = Path(tempfile.mkdtemp(prefix="medmask-bench-window-"))
    try:
        lines = run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    publish("\n".join(lines) + "\n", args.out, "bench_window.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
