"""The layers docs/architecture.md draws are the layers import-linter enforces, and they hold."""

from __future__ import annotations

import subprocess
import sys

import layers_diagram as D


def test_the_diagram_in_the_docs_is_generated_from_the_contracts():
    want = D.render()
    assert D.documented() == want, (
        "docs/architecture.md's layer diagram differs from the import-linter contracts of "
        "pyproject.toml; regenerate it with: python tests/architecture/layers_diagram.py\n" + want
    )


def test_every_module_is_in_a_layer():
    """The layers contract is exhaustive: a new top-level module must be given a layer."""
    (layers,) = [c for c in D.contracts() if c["id"] == "medmask-layers"]
    assert layers["exhaustive"] is True
    named = {m.strip() for layer in layers["layers"] for m in layer.replace("|", ":").split(":")}
    present = {
        p.stem if p.is_file() else p.name
        for p in (D.REPO / "medmask").iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()
    }
    assert present == named


def test_lint_imports_keeps_every_contract():
    """What `make test` runs: every contract kept (a back-arrow fails the suite too)."""
    run = subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()"],
        cwd=D.REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout
