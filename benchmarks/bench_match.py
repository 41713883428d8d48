"""``match_allowed_values`` against ``numpy.isin`` and the plain interval method.

Label maps: the real case's 117 masks painted into a uint8 map (synthetic
ellipsoids when the case is absent), and the same map relabelled into uint16
with labels up to ~1,000. Label sets from 1 value to 60 scattered values.
Figures are medians (ms). Usage::

    .venv/bin/python benchmarks/bench_match.py --repeat 7
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from medmask import match_allowed_values

REAL_CASE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "totalseg_s0000"


def interval_method(arr: np.ndarray, values: list[int]) -> np.ndarray:
    """The 0.1.x approach: OR of ``(a >= lo) & (a <= hi)`` over runs of consecutive values."""
    values = sorted(set(values))
    out = np.zeros(arr.shape, bool)
    start = prev = values[0]
    for v in [*values[1:], None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        out |= (arr >= start) & (arr <= prev)
        if v is not None:
            start = prev = v
    return out


def build_maps() -> tuple[np.ndarray, np.ndarray, str]:
    files = sorted(REAL_CASE.glob("*.nii.gz")) if REAL_CASE.is_dir() else []
    if files:
        import nibabel as nib

        lab = None
        for k, f in enumerate(files):
            a = np.asarray(nib.load(str(f)).dataobj).transpose(2, 1, 0) != 0
            if lab is None:
                lab = np.zeros(a.shape, np.uint8)
            lab[a] = k + 1
        source = f"real case ({len(files)} masks)"
    else:
        rng = np.random.default_rng(0)
        shape = (294, 192, 179)
        lab = np.zeros(shape, np.uint8)
        zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
        for k in range(60):
            c = [rng.uniform(0.2, 0.8) * s for s in shape]
            r = [rng.uniform(0.03, 0.12) * s for s in shape]
            lab[
                ((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2
                <= 1
            ] = k + 1
        source = "synthetic (60 ellipsoids)"
    lab16 = (lab.astype(np.uint16) * 8) + (lab > 0)  # labels up to ~940, same geometry
    return lab, lab16, source


def label_sets(present: list[int]) -> list[tuple[str, list[int]]]:
    p = sorted(present)
    rng = np.random.default_rng(1)

    def scattered(n: int) -> list[int]:
        return sorted(rng.choice(p, size=min(n, len(p)), replace=False).tolist())

    return [
        ("1 value", [p[len(p) // 2]]),
        ("2 contiguous", p[:2] if p[1] == p[0] + 1 else [p[0], p[0] + 1]),
        ("5 contiguous", list(range(p[0], p[0] + 5))),
        ("3 scattered", scattered(3)),
        ("10 scattered", scattered(10)),
        ("20 scattered", scattered(20)),
        ("40 scattered", scattered(40)),
        ("60 scattered", scattered(60)),
    ]


def median_ms(fn, repeat: int) -> float:
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e3


def run(repeat: int = 7) -> list[dict]:
    """Measure every (map, label set) pair; returns one dict per row."""
    lab8, lab16, source = build_maps()
    rows = []
    for title, lab in (("uint8", lab8), ("uint16", lab16)):
        present = [int(v) for v in np.unique(lab) if v]
        for name, values in label_sets(present):
            ref = np.isin(lab, values)
            assert np.array_equal(match_allowed_values(lab, values), ref)
            assert np.array_equal(interval_method(lab, values), ref)
            rows.append(
                {
                    "map": title,
                    "set": name,
                    "medmask_ms": median_ms(
                        lambda lab=lab, v=values: match_allowed_values(lab, v), repeat
                    ),
                    "isin_ms": median_ms(lambda lab=lab, v=values: np.isin(lab, v), repeat),
                    "interval_ms": median_ms(
                        lambda lab=lab, v=values: interval_method(lab, v), repeat
                    ),
                    "source": source,
                    "shape": lab.shape,
                }
            )
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"label maps: {rows[0]['source']}, shape (z,y,x) {rows[0]['shape']}; median ms\n")
    print("| map | label set | medmask | numpy.isin | interval | vs isin | vs interval |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['map']} | {r['set']} | {r['medmask_ms']:.2f} | {r['isin_ms']:.2f} | {r['interval_ms']:.2f} "
            f"| {r['isin_ms'] / r['medmask_ms']:.1f}x | {r['interval_ms'] / r['medmask_ms']:.1f}x |"
        )


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args(argv)
    rows = run(args.repeat)
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
