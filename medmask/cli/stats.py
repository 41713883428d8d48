"""``medmask stats``: per-mask figures and a per-name summary of a dataset, from the index."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from ..errors import MaskValidationError, close_matches
from ..io.names import expect_name, split_suffix
from ._common import (
    AddCommand,
    UsageError,
    note,
    plural,
    progress,
    report_failed,
    say,
    storage_options,
)


def _plain(v: Any) -> Any:
    """A JSON-ready copy of one table cell (tuples -> lists, NaN -> None, numpy -> Python)."""
    if v is None:
        return None
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, str):  # numpy scalars
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def records(df) -> list[dict[str, Any]]:
    """The rows of a table as JSON-ready dicts."""
    cols = list(df.columns)
    return [{c: _plain(v) for c, v in zip(cols, row, strict=True)} for row in df.itertuples(False)]


def _flat(df):
    """A copy whose container cells (bbox, labels, colours...) are JSON strings, for CSV and
    Parquet (which want one type per column)."""
    out = df.copy()
    for c in out.columns:
        if out[c].map(lambda v: isinstance(v, dict | list | tuple)).any():
            out[c] = out[c].map(
                lambda v: None if v is None else json.dumps(_plain(v), ensure_ascii=False)
            )
    return out


def _summary_path(path: Path, suffix: str) -> Path:
    return path.with_name(split_suffix(path)[0] + ".summary" + suffix)


def _write(df, summary, path: Path, kind: str) -> list[Path]:
    try:
        expect_name(path, kind, what=f"--{kind} output")
    except MaskValidationError as exc:
        raise UsageError(str(exc)) from None
    spath = _summary_path(path, path.name[len(split_suffix(path)[0]) :])
    if kind == "csv":
        _flat(df).to_csv(path, index=False)
        _flat(summary).to_csv(spath, index=False)
    else:
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise UsageError("--parquet needs pyarrow: pip install pyarrow") from None
        _flat(df).to_parquet(path, index=False)
        _flat(summary).to_parquet(spath, index=False)
    return [path, spath]


def _fmt_ml(v: float) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:,.2f}"


def _print_summary(summary) -> None:
    width = max([len(str(n)) for n in summary["name"]] + [4])
    print(
        f"{'name':<{width}} {'cases':>6} {'present':>7} {'empty':>6} {'missing':>7} "
        f"{'border':>6} {'min mL':>10} {'median mL':>10} {'max mL':>10}"
    )
    for r in summary.itertuples(False):
        print(
            f"{r.name:<{width}} {r.cases:>6} {r.present:>7} {r.empty:>6} {r.missing:>7} "
            f"{r.touching_border:>6} {_fmt_ml(r.volume_ml_min):>10} "
            f"{_fmt_ml(r.volume_ml_median):>10} {_fmt_ml(r.volume_ml_max):>10}"
        )


def _print_masks(df) -> None:
    width = max([len(str(n)) for n in df["name"]] + [4])
    cw = max([len(str(n)) for n in df["case"]] + [4])
    print(
        f"{'case':<{cw}} {'name':<{width}} {'voxels':>10} {'mL':>10} {'border':>6}  "
        f"{'centroid RAS mm':<24} source"
    )
    for r in df.itertuples(False):
        c = r.centroid_ras_mm
        cen = "-" if c is None else "(" + ", ".join(f"{v:.1f}" for v in c) + ")"
        print(
            f"{r.case:<{cw}} {r.name:<{width}} {r.voxels:>10,} {_fmt_ml(r.volume_ml):>10} "
            f"{'yes' if r.touches_border else 'no':>6}  {cen:<24} {r.source}"
        )


def _grid_note(df) -> str:
    """The summary's word on archives whose grid is their segmentation's own extent (a SEG
    packed without its image series), which may not line up with the image."""
    if "archive_grid" not in df.columns:
        return ""
    paths = {p for p, g in zip(df["path"], df["archive_grid"], strict=True) if g == "segmentation"}
    if not paths:
        return ""
    return (
        f"; {plural(len(paths), 'file')} on the segmentation's own grid, not the image's "
        "(archive_grid; see 'medmask info')"
    )


def cmd_stats(args: argparse.Namespace) -> int:
    from .. import stats as st

    so = storage_options(args)
    try:
        files = st.find_mask_files(args.paths, storage_options=so)
    except FileNotFoundError as exc:  # a missing input is bad usage
        raise UsageError(str(exc)) from None
    if not files:
        raise UsageError(f"no .msk / .mska files in {' '.join(args.paths)}")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # failures are reported below
        df = st.stats(
            files,
            storage_options=so,
            progress=progress(args, len(files), "stats", unit="file"),
            on_error="skip",
        )
    failed = df.attrs.get("failed", [])
    if args.lacking:
        names = set(df["name"])
        if args.lacking not in names:
            near = close_matches(args.lacking, sorted(names))
            if near:  # most likely misspelt: every case would be listed as lacking it
                raise UsageError(
                    f"--lacking {args.lacking}: no file stores a mask of this name{near}"
                )
            say_err = f"medmask stats: note: no file stores a mask named {args.lacking!r}"
            print(say_err, file=sys.stderr)
        for case in st.lacking(df, args.lacking, empty_is_missing=not args.stored_empty_counts):
            print(case)
    else:
        summary = st.summarize(df)
        if args.json:
            print(
                json.dumps(
                    {"masks": records(df), "summary": records(summary)},
                    indent=1,
                    ensure_ascii=False,
                )
            )
        elif args.csv or args.parquet:
            kind = "csv" if args.csv else "parquet"
            written = _write(df, summary, Path(args.csv or args.parquet), kind)
            say(
                args,
                f"wrote {written[0]} ({plural(len(df), 'mask')}) and {written[1]} "
                f"({plural(len(summary), 'name')})",
            )
        else:
            if args.masks:
                _print_masks(df)
                print()
            _print_summary(summary)
    decoded = int(df.attrs.get("decoded", 0))
    if not args.json and not args.lacking:
        extra = _grid_note(df)
        if decoded:
            extra += (
                f"; {plural(decoded, 'mask')} decoded (version-1 files or archives of medmask "
                "0.2.0 lack stored figures; 'medmask convert' upgrades them)"
            )
        say(args, f"{plural(len(files) - len(failed), 'file')}, {plural(len(df), 'mask')}{extra}")
    elif decoded and not args.quiet:
        note(
            args,
            f"{plural(decoded, 'mask')} decoded (no stored figures in version-1 files or "
            "archives of medmask 0.2.0)",
        )
    return report_failed(args, (msg for _path, msg in failed))


def register(add: AddCommand) -> None:
    """Add ``stats`` to the parser (``add`` makes one subparser)."""
    s = add(
        "stats",
        "per-mask voxels, mL, boxes, centroids, border contact; per-name summary",
        "Describe a dataset from the archives' index: one row per mask (case, name, voxels, mL,\n"
        "bounding box, centroid in RAS mm, touches the border, empty, stored attributes) and a\n"
        "summary per name (cases storing it, present, empty, missing, touching the border, volume\n"
        "min/median/max). Folders are searched for .msk/.mska files; URLs (s3://...) need\n"
        "--storage-option where fsspec does not find its settings. Version-1 files and archives\n"
        "of medmask 0.2.0 are decoded for what their index lacks (said at the end).\n\n"
        "examples:\n"
        "  medmask stats packed/                          summary table\n"
        '  medmask stats packed/ --json > stats.json      {"masks": [...], "summary": [...]}\n'
        "  medmask stats packed/ --csv stats.csv          + stats.summary.csv\n"
        "  medmask stats packed/ --lacking liver          cases without a (non-empty) liver",
    )
    s.add_argument("paths", nargs="+", metavar="PATH", help=".mska/.msk files, folders, URLs")
    out = s.add_mutually_exclusive_group()
    out.add_argument(
        "--json", action="store_true", help='print {"masks": [rows], "summary": [rows]}'
    )
    out.add_argument(
        "--csv",
        metavar="FILE",
        help="write the per-mask rows to FILE (.csv) and the summary "
        "beside it (FILE stem + .summary.csv)",
    )
    out.add_argument(
        "--parquet", metavar="FILE", help="the same as Parquet (.parquet; needs pyarrow)"
    )
    out.add_argument(
        "--lacking",
        metavar="NAME",
        help="print the cases without mask NAME (or with it empty), one per line",
    )
    s.add_argument(
        "--stored-empty-counts",
        action="store_true",
        help="with --lacking: a stored but empty mask counts as present",
    )
    s.add_argument("--masks", action="store_true", help="also print the per-mask table")
    s.set_defaults(func=cmd_stats)
