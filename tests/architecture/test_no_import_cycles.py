"""No import cycles in medmask and medmask_monai, counting every import: module level,
function level and ``TYPE_CHECKING`` blocks (each is a real arrow between two modules)."""

from __future__ import annotations

import grimp
import pytest


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            if i < len(edges[node]):
                work.append((node, i + 1))
                nxt = edges[node][i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
            if work:  # propagate to the parent
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return found


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("medmask", "medmask_monai", include_external_packages=False)


def test_the_finder_finds_a_cycle():
    """The check itself: a two-module cycle built by hand is reported."""
    g = grimp.ImportGraph()
    for m in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        g.add_module(m)
    g.add_import(importer="pkg.a", imported="pkg.b")
    g.add_import(importer="pkg.b", imported="pkg.a")
    g.add_import(importer="pkg.c", imported="pkg.a")
    assert cycles(g) == [["pkg.a", "pkg.b"]]


def test_function_level_imports_are_in_the_graph(graph):
    """medmask/__init__.py imports medmask.viz inside a function only (an upward call)."""
    assert "medmask.viz" in graph.find_modules_directly_imported_by("medmask")


def test_no_import_cycles(graph):
    found = cycles(graph)
    assert found == [], "import cycles (module and function level):\n" + "\n".join(
        " <-> ".join(c) for c in found
    )
