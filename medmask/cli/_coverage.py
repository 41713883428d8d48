"""``--scheme``: a dataset's coverage under a label scheme, printed (``medmask stats`` and
``medmask catalog`` share it). The work is :func:`medmask.stats.scheme_coverage`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import MaskValidationError
from ._common import UsageError, note

SCHEME_HELP = (
    "show each case's coverage under a label scheme: a built-in one (totalseg, amos, btcv, "
    "abdomenatlas, flare22, msd_task03_liver...) or a JSON file {class: label}; classes are "
    "present, empty (annotated, no voxels) or not annotated"
)


def scheme_arg(value: str) -> Any:
    """The :class:`~medmask.schemes.LabelScheme` a ``--scheme`` value names.

    Raises:
        UsageError: No such built-in scheme (close matches listed), or a bad JSON file.
    """
    from ..schemes import LabelScheme, get_scheme

    try:
        if value.lower().endswith(".json"):
            path = Path(value)
            try:
                classes = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise UsageError(f"--scheme {value}: cannot read the scheme ({exc})") from None
            return LabelScheme(path.stem, classes)
        return get_scheme(value)
    except MaskValidationError as exc:
        raise UsageError(f"--scheme: {exc}") from None


def coverage_tables(df: Any, scheme: Any) -> tuple[Any, Any, Any]:
    """``(per case, per class, long table)`` of ``df``'s coverage under ``scheme``."""
    from .. import stats as st

    cov = st.scheme_coverage(df, scheme)
    return st.coverage_by_case(cov), st.coverage_by_class(cov), cov


def _records(table: Any) -> list[dict[str, Any]]:
    """Rows of a coverage table as JSON-ready dicts (numpy scalars as Python ones)."""
    return [
        {k: v.item() if hasattr(v, "item") else v for k, v in row.items()}
        for row in table.to_dict("records")
    ]


def coverage_json(df: Any, scheme: Any) -> dict[str, Any]:
    """The coverage as a JSON-ready object: ``scheme``, ``cases``, ``classes``, ``unknown``."""
    by_case, by_class, cov = coverage_tables(df, scheme)
    return {
        "scheme": scheme.name,
        "cases": _records(by_case),
        "classes": _records(by_class),
        "unknown": {n: sorted(set(cs)) for n, cs in cov.attrs["unknown_cases"].items()},
    }


def print_coverage(args: argparse.Namespace, df: Any, scheme: Any) -> None:
    """Print the per-case and per-class coverage tables; unknown names go to stderr as
    notes (with close matches), never dropped silently."""
    from .. import stats as st

    by_case, by_class, cov = coverage_tables(df, scheme)
    n = len(scheme)
    print(f"coverage under scheme {scheme.name!r} ({n} class{'' if n == 1 else 'es'})")
    cw = max([len(str(c)) for c in by_case["case"]] + [4])
    print(f"{'case':<{cw}} {'present':>7} {'empty':>6} {'not annotated':>13}")
    for r in by_case.itertuples(False):
        print(f"{r.case:<{cw}} {r.present:>7} {r.empty:>6} {r.not_annotated:>13}")
    print()
    width = max([len(str(c)) for c in by_class["class"]] + [5])
    print(f"{'class':<{width}} {'label':>5} {'present':>7} {'empty':>6} {'not annotated':>13}")
    for cname, label, present, empty, absent in by_class.itertuples(False):
        print(f"{cname:<{width}} {label:>5} {present:>7} {empty:>6} {absent:>13}")
    for line in st.unknown_names(cov):
        note(args, f"name unknown to the vocabulary: {line}")
