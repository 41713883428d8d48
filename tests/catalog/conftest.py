"""A small dataset of archives for the catalogue tests: phantoms of two 'datasets' with
different names, one archive annotated for a listed set, one version-1 archive."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

from catalog_support import A_NAMES, B_NAMES, write_archive  # noqa: E402


@pytest.fixture
def dataset(tmp_path) -> Path:
    """``tmp/data/``: a/case_0..2.mska (dataset A), b/case_3..4.mska (dataset B, case_4
    annotated for the liver and both kidneys, its right kidney not stored: annotated and
    absent), a/old.mska (version 1)."""
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    for c in range(3):
        write_archive(root / "a" / f"case_{c}.mska", c, A_NAMES)
    write_archive(root / "b" / "case_3.mska", 3, B_NAMES)
    write_archive(
        root / "b" / "case_4.mska",
        4,
        {"liver": "Liver", "kidney_left": "left kidney"},
        annotated=["Liver", "left kidney", "right kidney"],
    )
    write_archive(root / "a" / "old.mska", 5, {"liver": "liver", "spleen": "spleen"}, compat="0.1")
    return root
