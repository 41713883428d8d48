"""Coverage of a dataset under a label scheme: per case, which classes are present, empty or
not annotated, from a :func:`medmask.stats` table or a catalogue (names, voxel counts and
archive attributes only; nothing is decoded).

The rule for partial labels is :mod:`medmask.schemes.partial`'s: an archive's
``annotated`` attribute lists what its annotators covered; without it, its stored masks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import MaskValidationError
from ..schemes import CaseLabels, Coverage, LabelScheme, case_labels
from .table import _pd

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "COVERAGE_COLUMNS",
    "archive_groups",
    "attrs_of",
    "scheme_coverage",
    "coverage_by_case",
    "coverage_by_class",
    "unknown_names",
]

#: The columns of :func:`scheme_coverage` (one row per case and class).
COVERAGE_COLUMNS = ("case", "path", "class", "label", "state")
_STATES = [c.value for c in Coverage]


def attrs_of(value: object) -> dict:
    """A catalogue's ``archive_attrs`` cell as a dict: JSON text, a dict, or nothing
    (``None``/NaN: ``{}``)."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str) and value:
        return json.loads(value)
    return {}


def _archive_attrs(df: pd.DataFrame, rows: np.ndarray) -> list[dict]:
    """The archive attributes that matter here (``annotated``) of the given rows: from a
    catalogue's ``archive_attrs`` or a stats table's ``archive_annotated`` column."""
    if "archive_attrs" in df:
        cells = df["archive_attrs"].to_numpy(dtype=object)[rows]
        return [attrs_of(c) for c in cells]
    if "archive_annotated" in df:
        cells = df["archive_annotated"].to_numpy(dtype=object)[rows]
        return [{} if c is None or c is np.nan else {"annotated": list(c)} for c in cells]
    return [{} for _ in rows]


def archive_groups(df: pd.DataFrame) -> list[tuple[str, str, list[str], list[int], dict]]:
    """``(path, case, names, voxels, archive attrs)`` per file of a table, in order of
    first appearance (one pass over the columns, no per-group pandas work).

    Raises:
        MaskValidationError: ``df`` lacks the columns.
    """
    missing = [c for c in ("case", "name", "voxels", "path") if c not in df.columns]
    if missing:
        raise MaskValidationError(
            f"expected a table from medmask.stats() or a catalogue; it lacks the columns {missing}"
        )
    pd = _pd()
    codes, paths = pd.factorize(df["path"])
    order = np.argsort(codes, kind="stable")
    starts = np.searchsorted(codes[order], np.arange(len(paths) + 1))
    names = df["name"].to_numpy(dtype=object)[order]
    voxels = df["voxels"].to_numpy(dtype=np.int64)[order]
    cases = df["case"].to_numpy(dtype=object)[order]
    attrs = _archive_attrs(df, order[starts[:-1]])
    out = []
    for k, path in enumerate(paths):
        a, b = int(starts[k]), int(starts[k + 1])
        out.append((str(path), str(cases[a]), names[a:b].tolist(), voxels[a:b].tolist(), attrs[k]))
    return out


def _labels_cache(scheme: LabelScheme, source: str | None, include_partial: bool):
    cache: dict[tuple, CaseLabels] = {}

    def labels(names: list[str], attrs: dict) -> CaseLabels:
        listed = attrs.get("annotated")
        key = (tuple(names), None if listed is None else tuple(listed))
        found = cache.get(key)
        if found is None:  # datasets repeat a few name sets: map each once
            found = cache[key] = case_labels(
                scheme, names, attrs, source=source, include_partial=include_partial
            )
        return found

    return labels


def scheme_coverage(
    df: pd.DataFrame,
    scheme: LabelScheme,
    *,
    source: str | None = None,
    include_partial: bool = False,
) -> pd.DataFrame:
    """Each case's coverage under ``scheme``: one row per case and class.

    Args:
        df: A table from :func:`medmask.stats` or a catalogue's ``df``.
        scheme: The target scheme (``medmask.schemes.get_scheme("totalseg")``).
        source: The class-map id the mask names come from (its scoped synonyms apply).
        include_partial: Count a derived class with some annotated parts as annotated.

    Returns:
        A :class:`pandas.DataFrame` with :data:`COVERAGE_COLUMNS`: ``state`` is
        ``"present"`` (the class's masks hold voxels), ``"empty"`` (annotated, no voxels)
        or ``"not_annotated"``. ``attrs["unknown"]`` maps each name the vocabulary does not
        know to its close matches and ``attrs["unknown_cases"]`` to the cases storing it.

    Raises:
        MaskValidationError: ``df`` is not such a table.
        VocabularyError: An archive's ``annotated`` attribute is not a list of names.
    """
    pd = _pd()
    labels_of = _labels_cache(scheme, source, include_partial)
    classes = scheme.classes
    n = len(classes)
    rows_case: list[str] = []
    rows_path: list[str] = []
    states: list[int] = []
    unknown: dict[str, str] = {}
    unknown_cases: dict[str, list[str]] = {}
    for path, case, names, voxels, attrs in archive_groups(df):
        cl = labels_of(names, attrs)
        for state in cl.coverage(dict(zip(names, voxels, strict=True))).values():
            states.append(_STATES.index(state.value))
        rows_case += [case] * n
        rows_path += [path] * n
        for name, hint in cl.mapping.unknown.items():
            unknown.setdefault(name, hint)
            unknown_cases.setdefault(name, []).append(case)
    groups = len(rows_case) // max(n, 1)
    out = pd.DataFrame(
        {
            "case": rows_case,
            "path": rows_path,
            "class": [c.name for c in classes] * groups,
            "label": np.tile(np.array([c.label for c in classes], dtype=np.int64), groups),
            "state": pd.Categorical.from_codes(np.asarray(states, dtype=np.int8), _STATES),
        },
        columns=list(COVERAGE_COLUMNS),
    )
    out.attrs["scheme"] = scheme.name
    out.attrs["unknown"] = unknown
    out.attrs["unknown_cases"] = unknown_cases
    return out


def _counts(cov: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    table = cov.groupby(by, sort=False, observed=True)["state"].value_counts().unstack()
    table = table.reindex(columns=_STATES, fill_value=0).fillna(0).astype("int64")
    return table.reset_index().rename_axis(None, axis=1)


def coverage_by_case(cov: pd.DataFrame) -> pd.DataFrame:
    """Per case: how many classes of the scheme are present, empty, not annotated.

    Args:
        cov: A table from :func:`scheme_coverage`.

    Returns:
        Columns ``case``, ``path``, ``present``, ``empty``, ``not_annotated``, in the
        order of the cases in ``cov``.
    """
    return _counts(cov, ["path", "case"])[["case", "path", *_STATES]]


def coverage_by_class(cov: pd.DataFrame) -> pd.DataFrame:
    """Per class of the scheme: in how many cases it is present, empty, not annotated.

    Args:
        cov: A table from :func:`scheme_coverage`.

    Returns:
        Columns ``class``, ``label``, ``present``, ``empty``, ``not_annotated``, in the
        scheme's order.
    """
    return _counts(cov, ["label", "class"])[["class", "label", *_STATES]]


def unknown_names(cov: pd.DataFrame) -> list[str]:
    """One line per mask name the scheme's vocabulary does not know: the name, its close
    matches and how many cases store it (nothing is dropped silently).

    Args:
        cov: A table from :func:`scheme_coverage`.
    """
    cases: dict[str, list[str]] = cov.attrs.get("unknown_cases", {})
    hints: dict[str, Any] = cov.attrs.get("unknown", {})
    return [
        f"{name!r}{hints.get(name, '')}: in {len(cs)} case{'s' if len(cs) != 1 else ''}"
        for name, cs in sorted(cases.items())
    ]
