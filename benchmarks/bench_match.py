"""``match_allowed_values`` against ``numpy.isin`` and the plain interval method.

Two label maps of 10.1M voxels:

* uint8: the real case ``../shared/data/totalseg_s0000`` (117 binary masks, mask ``i``
  painted as label ``i + 1``, transposed to (z, y, x)); where that folder is absent,
  a synthetic map of 60 ellipsoids of shape (294, 192, 179), labelled with 60 of the
  labels 1..117.
* uint16: the same map with its labels spread up to ~1,000 (label ``l`` -> ``8 l + 1``
  for 117 labels).

Label sets from 1 value to 60 scattered values; scattered sets are drawn (seeded)
from all the case's labels, present in the map or not, as a user asking for a list
of organs would. Each method is timed in turn within each repeat (interleaved, so
machine load hits all three alike); figures are medians in milliseconds. The
"interval" baseline ORs ``(a >= lo) & (a <= hi)`` over the runs of consecutive
values; ``numpy.isin`` gets the values as a list. Usage::

    .venv/bin/python benchmarks/bench_match.py --repeat 9

Other scripts can ``import bench_match`` and call :func:`run` (rows as dicts) or
:func:`main` (prints the table too).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from medmask.ops import match_allowed_values  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _check import require_equal  # noqa: E402

#: The real case (env ``MEDMASK_REAL_CASE`` points elsewhere).
REAL_CASE = Path(os.environ.get("MEDMASK_REAL_CASE", ROOT.parent / "shared/data/totalseg_s0000"))
SYNTHETIC_SHAPE = (294, 192, 179)
SYNTHETIC_LABELS = 60  # ellipsoids, labelled with distinct labels drawn from 1..117
SYNTHETIC_LABEL_SPACE = 117  # as many labels as the real case has masks


def interval_method(arr: np.ndarray, values: list[int]) -> np.ndarray:
    """The plain approach: OR of ``(a >= lo) & (a <= hi)`` over runs of consecutive values."""
    out = np.zeros(arr.shape, bool)
    for lo, hi in runs_of(values):
        out |= (arr >= lo) & (arr <= hi)
    return out


def runs_of(values: list[int]) -> list[tuple[int, int]]:
    """Sorted unique values -> inclusive runs of consecutive integers."""
    runs: list[tuple[int, int]] = []
    for v in sorted(set(values)):
        if runs and v == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


def _real_map(files: list[Path]) -> np.ndarray:
    import nibabel as nib

    lab = None
    for i, f in enumerate(files):
        mask = np.asarray(nib.load(str(f)).dataobj).transpose(2, 1, 0) != 0
        if lab is None:
            lab = np.zeros(mask.shape, np.uint8)
        lab[mask] = i + 1
    return lab


def _synthetic_map() -> np.ndarray:
    rng = np.random.default_rng(0)
    shape = np.array(SYNTHETIC_SHAPE)
    lab = np.zeros(SYNTHETIC_SHAPE, np.uint8)
    labels = rng.choice(np.arange(1, SYNTHETIC_LABEL_SPACE + 1), SYNTHETIC_LABELS, replace=False)
    for label in labels:
        c = rng.uniform(0.15, 0.85, 3) * shape
        r = rng.uniform(0.03, 0.12, 3) * shape
        lo = np.maximum(np.floor(c - r), 0).astype(int)
        hi = np.minimum(np.ceil(c + r) + 1, shape).astype(int)
        zz, yy, xx = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        inside = ((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + (
            (xx - c[2]) / r[2]
        ) ** 2 <= 1
        lab[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]][inside] = label
    return lab


def build_maps() -> tuple[np.ndarray, np.ndarray, int, str]:
    """The uint8 and uint16 maps, the number of labels, and where the map comes from."""
    files = sorted(REAL_CASE.glob("*.nii.gz")) if REAL_CASE.is_dir() else []
    if files:
        lab8 = _real_map(files)
        n_labels, source = len(files), f"real case {REAL_CASE.name} ({len(files)} masks)"
    else:
        lab8 = _synthetic_map()
        n_labels = SYNTHETIC_LABEL_SPACE
        source = f"synthetic ({SYNTHETIC_LABELS} ellipsoids, labels 1..{n_labels})"
    lab16 = np.where(lab8 > 0, lab8.astype(np.uint16) * to_u16_factor(n_labels) + 1, 0).astype(
        np.uint16
    )
    return lab8, lab16, n_labels, source


def to_u16_factor(n_labels: int) -> int:
    """Spacing of the uint16 labels: label ``l`` becomes ``factor * l + 1`` (<= ~1,000)."""
    return max(1, 1000 // n_labels)


def label_sets(lab: np.ndarray, labels: list[int]) -> list[tuple[str, list[int]]]:
    """Label sets for a map whose label space is ``labels`` (present in ``lab`` or not).

    Contiguous sets are consecutive values of the map's dtype from a present label;
    scattered sets are drawn (seed 1) from ``labels``.
    """
    values, counts = np.unique(lab, return_counts=True)
    present = [int(v) for v in values if v]
    rng = np.random.default_rng(1)

    def scattered(n: int) -> list[int]:
        return sorted(int(v) for v in rng.choice(labels, size=min(n, len(labels)), replace=False))

    biggest = int(values[1:][np.argmax(counts[1:])])
    start = present[len(present) // 2]
    return [
        ("1 value", [biggest]),
        ("2 contiguous", [start, start + 1]),
        ("5 contiguous", list(range(start, start + 5))),
        ("3 scattered", scattered(3)),
        ("5 scattered", scattered(5)),
        ("10 scattered", scattered(10)),
        ("20 scattered", scattered(20)),
        ("40 scattered", scattered(40)),
        ("60 scattered", scattered(60)),
        (f"all {len(present)} present", present),
    ]


def _time(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median ms of each callable; the callables take turns within each repeat."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def run(repeat: int = 7) -> list[dict]:
    """Measure every (map, label set) pair; one dict per row of the table.

    Keys: ``map``, ``set``, ``values`` (count), ``runs``, ``medmask_ms``, ``isin_ms``,
    ``interval_ms``, ``speedup_isin``, ``speedup_interval``, ``ok`` (medmask at least
    as fast as both), ``source``, ``shape``.
    """
    lab8, lab16, n_labels, source = build_maps()
    factor = to_u16_factor(n_labels)
    rows = []
    for title, lab, labels in (
        ("uint8", lab8, list(range(1, n_labels + 1))),
        ("uint16", lab16, [factor * v + 1 for v in range(1, n_labels + 1)]),
    ):
        for name, values in label_sets(lab, labels):
            ref = np.isin(lab, values)
            # before timing: all three give numpy.isin's answer
            require_equal(
                f"match_allowed_values, {title} {name}", match_allowed_values(lab, values), ref
            )
            require_equal(f"interval method, {title} {name}", interval_method(lab, values), ref)
            ms = _time(
                {
                    "medmask": lambda lab=lab, v=values: match_allowed_values(lab, v),
                    "isin": lambda lab=lab, v=values: np.isin(lab, v),
                    "interval": lambda lab=lab, v=values: interval_method(lab, v),
                },
                repeat,
            )
            rows.append(
                {
                    "map": title,
                    "set": name,
                    "values": len(values),
                    "runs": len(runs_of(values)),
                    "medmask_ms": ms["medmask"],
                    "isin_ms": ms["isin"],
                    "interval_ms": ms["interval"],
                    "speedup_isin": ms["isin"] / ms["medmask"],
                    "speedup_interval": ms["interval"] / ms["medmask"],
                    "ok": ms["medmask"] <= min(ms["isin"], ms["interval"]),
                    "source": source,
                    "shape": lab.shape,
                }
            )
    return rows


def print_table(rows: list[dict]) -> None:
    r0 = rows[0]
    print(
        f"label maps: {r0['source']}, shape (z, y, x) {r0['shape']} "
        f"({int(np.prod(r0['shape'])):,} voxels); median ms\n"
    )
    print("| map | label set | runs | medmask | numpy.isin | interval | vs isin | vs interval |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['map']} | {r['set']} | {r['runs']} | {r['medmask_ms']:.2f} "
            f"| {r['isin_ms']:.2f} | {r['interval_ms']:.2f} "
            f"| {r['speedup_isin']:.1f}x | {r['speedup_interval']:.1f}x |"
        )
    slow = [f"{r['map']} {r['set']}" for r in rows if not r["ok"]]
    print(
        "\nmedmask at least as fast as both on every row: "
        + ("yes" if not slow else "NO (" + ", ".join(slow) + ")")
    )


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeat", type=int, default=7, help="timed calls per method (median)")
    args = ap.parse_args(argv)
    rows = run(args.repeat)
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
