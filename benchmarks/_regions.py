"""Marked regions: how a benchmark's Markdown reaches README.md and docs/.

A benchmark wraps each table (or list of figures) that the documentation quotes in
``<!-- bench:NAME -->`` ... ``<!-- /bench:NAME -->`` in the Markdown it writes to
``bench_output/``. README.md and docs/*.md hold the same markers; ``update_docs.py`` (run by
``make bench-all``) copies each region's content from the benchmark's output into them.
tests/docs/test_bench_regions.py checks that every figure-bearing table of the documentation
sits in such a region and that a benchmark writes each region named there.
"""

from __future__ import annotations

import re

_REGION = re.compile(r"<!-- bench:([\w.-]+) -->\n(.*?)<!-- /bench:\1 -->", re.S)


def region(name: str, text: str) -> str:
    """``text`` between the markers of region ``name`` (one trailing newline inside)."""
    if not re.fullmatch(r"[\w.-]+", name):
        raise ValueError(f"region name {name!r}: letters, digits, '_', '.', '-' only")
    return f"<!-- bench:{name} -->\n{text.rstrip()}\n<!-- /bench:{name} -->"


def begin(name: str) -> str:
    """The opening marker of region ``name`` (for output printed line by line)."""
    return region(name, "").split("\n", 1)[0]


def end(name: str) -> str:
    """The closing marker of region ``name``."""
    return region(name, "").rsplit("\n", 1)[1]


def regions(text: str) -> dict[str, str]:
    """``{name: content}`` of the marked regions in ``text``.

    Raises:
        ValueError: A region that appears twice, or a marker that opens and is never closed.
    """
    out: dict[str, str] = {}
    for m in _REGION.finditer(text):
        if m.group(1) in out:
            raise ValueError(f"region {m.group(1)!r} appears twice")
        out[m.group(1)] = m.group(2)
    opened = set(re.findall(r"<!-- bench:([\w.-]+) -->", text))
    closed = set(re.findall(r"<!-- /bench:([\w.-]+) -->", text))
    unbalanced = sorted((opened ^ closed) | (opened - set(out)))
    if unbalanced:
        raise ValueError(f"region markers not closed, or closed out of order: {unbalanced}")
    return out


def spans(text: str) -> list[tuple[int, int, str]]:
    """``(start, end, name)`` character spans of the regions in ``text``."""
    return [(m.start(), m.end(), m.group(1)) for m in _REGION.finditer(text)]


def replace(text: str, sources: dict[str, str]) -> tuple[str, list[str], list[str]]:
    """``text`` with each region's content taken from ``sources`` (by name).

    Returns:
        ``(new text, names replaced with different content, names with no source)``.
    """
    changed: list[str] = []
    missing: list[str] = []

    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name not in sources:
            missing.append(name)
            return m.group(0)
        if sources[name] != m.group(2):
            changed.append(name)
        return f"<!-- bench:{name} -->\n{sources[name]}<!-- /bench:{name} -->"

    return _REGION.sub(sub, text), changed, missing
