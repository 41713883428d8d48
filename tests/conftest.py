"""Shared pytest configuration and fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["remote_support"]  # moto S3 server and fault-injecting proxy fixtures

REPO = Path(__file__).resolve().parents[1]
#: The real TotalSegmentator case beside the repository (never copied into it).
REAL_CASE = Path(
    os.environ.get("MEDMASK_REAL_CASE", REPO.parent / "shared" / "data" / "totalseg_s0000")
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="run the long variants (marker 'slow')")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow") or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="long variant: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def real_case() -> Path:
    """Folder of the 117 real TotalSegmentator masks; skips when absent."""
    if not (REAL_CASE.is_dir() and any(REAL_CASE.glob("*.nii.gz"))):
        pytest.skip(f"real case not found at {REAL_CASE}")
    return REAL_CASE
