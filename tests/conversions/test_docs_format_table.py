"""The format table of docs/interop.md is the format table of the code."""

from __future__ import annotations

import re
from pathlib import Path

import medmask.conversions  # noqa: F401 - the built-in implementations
from medmask.conversions.catalog import format_table_markdown
from medmask.io.formats import formats

INTEROP = Path(__file__).resolve().parents[2] / "docs" / "interop.md"


def test_docs_table_is_generated_from_the_table():
    text = INTEROP.read_text(encoding="utf-8")
    found = re.search(r"<!-- format-table:[^>]*-->\n(.*?)<!-- /format-table -->", text, re.S)
    assert found, "docs/interop.md lost its format-table markers"
    assert found.group(1) == format_table_markdown(), (
        "docs/interop.md's format table is stale: paste `python -m medmask.conversions.catalog`"
    )


def test_every_builtin_entry_is_a_row():
    rows = format_table_markdown().splitlines()[2:]
    builtin = [f.kind for f in formats() if type(f).__module__.startswith("medmask.")]
    assert [r.split("|")[1].strip().strip("`") for r in rows] == builtin
    assert {"nifti", "folder", "seg.nrrd", "dicom-seg", "nnunet", "mska", "msk"} <= set(builtin)
