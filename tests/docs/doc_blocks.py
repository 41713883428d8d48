"""The code blocks of README.md and docs/*.md, and how each one is run.

Every fenced block carries an info string (the word after the opening fence) saying what
it is, so that nothing in the documentation is left untested by accident:

* ``python``, ``bash``, ``sh``, ``console``: run, in the order of the document. A
  document's blocks share one working folder, and its Python blocks one namespace, as a
  reader going down the page would. ``console`` blocks show ``$ command`` lines and what
  they print; each command runs and must exit 0, unless the block shows ``exit status N``
  (printed by ``...; echo "exit status $?"``), which it must then print.
* ``text``, ``json``, ``diff``: output, data, synopses and diagrams; never run.
* After the language, ``needs=WHAT`` marks a block that cannot run in the test suite; the
  test skips it with the reason in :data:`NEEDS` (installing packages from the network, a
  Dask cluster of several machines, a fuzzing run of hours). A block that needs S3 runs
  against a moto server on loopback.

A ``print(...)`` line directly followed by a ``# ...`` comment promises that output; the
test compares it (a trailing ``   (note)`` after three spaces is not part of the output).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: The documents whose blocks run, README first.
DOCUMENTS = ("README.md", *sorted(f"docs/{p.name}" for p in (REPO / "docs").glob("*.md")))
#: Languages whose blocks run.
RUN = ("python", "bash", "sh", "console")
#: Languages of blocks that are shown, never run (output, data, synopses, diagrams).
SHOWN = ("text", "json", "diff")
#: Why a block marked ``needs=WHAT`` is not run here (``s3`` runs against moto).
NEEDS = {
    "network": "installs packages from the network",
    "cluster": "needs a Dask cluster of several machines (tcp://scheduler-host:8786)",
    "hours": "a fuzzing campaign of hours",
    "dataset": "needs a public dataset (IDC, nnU-Net, BTCV...) that is not among the sample data",
    "s3": None,
}

_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", flags=re.S | re.M)


@dataclass
class Block:
    """One fenced block.

    Attributes:
        doc: The document (``README.md``, ``docs/cli.md``).
        line: The line of its opening fence.
        lang: The info string's first word (empty when there is none).
        needs: The ``needs=`` marks.
        body: The text inside the fences.
    """

    doc: str
    line: int
    lang: str
    needs: list[str] = field(default_factory=list)
    body: str = ""

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.lang in RUN

    @property
    def skip_reason(self) -> str | None:
        """Why the test suite cannot run it, or ``None``."""
        reasons = [NEEDS[n] for n in self.needs if NEEDS.get(n)]
        return "; ".join(reasons) or None


def blocks(doc: str) -> list[Block]:
    """The fenced blocks of a document, in order."""
    text = (REPO / doc).read_text(encoding="utf-8")
    out = []
    for m in _FENCE.finditer(text):
        words = m.group(1).split()
        lang = words[0] if words else ""
        needs = [w.split("=", 1)[1] for w in words[1:] if w.startswith("needs=")]
        out.append(Block(doc, text[: m.start()].count("\n") + 1, lang, needs, m.group(2)))
    return out


def promised_output(block: str) -> list[str]:
    """The ``# ...`` comment lines that directly follow a ``print(...)`` line: its output."""
    out, after_print = [], False
    for line in block.splitlines():
        stripped = line.strip()
        if after_print and stripped.startswith("# "):
            text = stripped[2:]
            out.append(re.split(r"\s{3,}\(", text)[0].rstrip())  # drop a trailing "   (note)"
            after_print = False
            continue
        after_print = stripped.startswith("print(") and "#" not in stripped
    return out


def console_steps(body: str) -> list[tuple[str, list[str]]]:
    """``(command, shown output lines)`` of a ``console`` block."""
    steps: list[tuple[str, list[str]]] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps and line.strip():
            steps[-1][1].append(line)
    return steps
