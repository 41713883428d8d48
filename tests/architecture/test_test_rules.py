"""The rules the tests themselves keep (docs/testing.md, "Guard tests"), checked on the
source of ``tests/`` so that a broken rule cannot come back unnoticed:

* no skip condition on medmask's own API or CLI: a feature that disappears must fail, not
  skip (skips are for a missing optional third-party package, sample data or platform
  feature, each with its reason);
* no wall-clock assertion: a test counts operations and compares outputs; timings belong
  in ``benchmarks/`` (a timeout that only stops a hang is fine);
* every test that uses sample data carries the ``realdata`` marker.

Each scanner is also run on small bad examples, so that a scanner that finds nothing
fails too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
OWN_PACKAGES = ("medmask", "medmask_monai")
#: Modules whose features may decide a skip (the platform, not medmask).
PLATFORM_MODULES = {"os", "sys", "signal", "socket", "select", "resource", "mp", "multiprocessing"}
#: Calls that read a clock.
CLOCKS = {"time", "perf_counter", "perf_counter_ns", "monotonic", "monotonic_ns", "time_ns"}
CLOCKS |= {"process_time", "process_time_ns", "thread_time", "thread_time_ns"}
#: Figures that are durations (fields of the reliability toolkit's results, and the like).
DURATION_NAMES = {"seconds", "max_seconds", "elapsed", "wall", "duration", "took"}


#: What a failing guard tells the author of a new test (docs/testing.md, "Rules").
FIX_SKIPS = (
    "skips that would hide a missing medmask feature (a feature that disappears must FAIL, "
    "not skip). Call medmask's API directly and let a missing name or option fail; skip only "
    "for a missing optional third-party package (pytest.importorskip('pkg')), missing sample "
    "data (use the real_case / interchange fixtures of tests/conftest.py) or a platform "
    "feature (os, sys, signal...), always with a reason (docs/testing.md, 'Rules'):"
)
FIX_CLOCKS = (
    "wall-clock assertions (they flake on a loaded 2-core machine). Count operations, "
    "events, requests or bytes, or compare outputs, instead; a timeout that only stops a "
    "hang is fine (ev.wait(10), q.get(timeout=30), p.join(timeout=5)); put timings in "
    "benchmarks/ (docs/testing.md, 'Rules'):"
)
FIX_REALDATA = (
    "tests that use sample data (the real_case or interchange fixture, directly or through "
    "another fixture) without the realdata marker. Add @pytest.mark.realdata to each (or "
    "pytestmark = pytest.mark.realdata to the module); a long whole-case variant also gets "
    "@pytest.mark.slow (docs/testing.md, 'Sample data'):"
)


def _scan(scanner) -> list[str]:
    """``scanner(source, where)`` over every test module."""
    return [
        p
        for f in _sources()
        for p in scanner(f.read_text(encoding="utf-8"), str(f.relative_to(TESTS)))
    ]


def _report(fix: str, problems: list[str]) -> str:
    return f"{len(problems)} {fix}\n  " + "\n  ".join(problems)


def _sources() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "fixtures" not in p.relative_to(TESTS).parts)


# -- skips on the project's own API ----------------------------------------------------------
def _call_name(node: ast.AST) -> str:
    """``pytest.skip`` / ``skip`` / ``pytest.mark.skipif`` -> its last two parts."""
    if isinstance(node, ast.Call):
        node = node.func
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts[:3]))


def _own_names(tree: ast.Module) -> set[str]:
    """Names a module binds by importing medmask or medmask_monai."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(OWN_PACKAGES):
            names |= {a.asname or a.name for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {
                (a.asname or a.name).split(".")[0]
                for a in node.names
                if a.name.startswith(OWN_PACKAGES)
            }
    return names


def _feature_probe(cond: ast.AST, own: set[str]) -> str | None:
    """Why ``cond`` looks at medmask's features (``None`` when it does not)."""
    for node in ast.walk(cond):
        if isinstance(node, ast.Call):
            name = _call_name(node)
            if name in ("hasattr", "getattr", "dir", "vars", "callable") and node.args:
                first = node.args[0]
                if not (isinstance(first, ast.Name) and first.id in PLATFORM_MODULES):
                    return f"{name}() on {ast.unparse(first)}"
            if name.endswith("signature"):
                return "inspect.signature()"
        if isinstance(node, ast.Name) and (node.id in own or node.id.endswith("_READY")):
            return f"uses {node.id}"
        if isinstance(node, ast.Attribute) and node.attr in ("__all__", "supports_attrs"):
            return f"looks at .{node.attr}"
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.strip().startswith(("medmask", "--help"))
        ):
            return f"tests the string {node.value!r}"
        if isinstance(node, ast.Name) and "help" in node.id:
            return f"reads the CLI's help ({node.id})"
    return None


def skip_problems(source: str, where: str = "<source>") -> list[str]:
    """Skips in ``source`` that would hide a missing medmask feature, and skips without a
    reason."""
    tree = ast.parse(source)
    own = _own_names(tree)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    out = []
    for node in ast.walk(tree):
        line = f"{where}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name) and t.id.endswith("_READY"):
                    out.append(f"{line}: a feature flag {t.id}")
        if isinstance(node, ast.Try):
            caught = {ast.unparse(h.type) for h in node.handlers if h.type is not None}
            imports = [n for n in node.body if isinstance(n, ast.Import | ast.ImportFrom)]
            own_import = any(
                (isinstance(n, ast.ImportFrom) and (n.module or "").startswith(OWN_PACKAGES))
                or (
                    isinstance(n, ast.Import)
                    and any(a.name.startswith(OWN_PACKAGES) for a in n.names)
                )
                for n in imports
            )
            if own_import and caught & {"ImportError", "ModuleNotFoundError", "AttributeError"}:
                out.append(f"{line}: an import of medmask caught ({', '.join(sorted(caught))})")
        if not isinstance(node, ast.Call):
            continue
        name = _call_name(node)
        if name.endswith("importorskip"):
            mod = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else ""
            if str(mod).startswith(OWN_PACKAGES):
                out.append(f"{line}: importorskip({mod!r}) of the project itself")
        elif name.endswith(("mark.skipif", "mark.xfail")):
            reason = {k.arg: k.value for k in node.keywords}.get("reason")
            if reason is None:
                out.append(f"{line}: {name} without reason=")
            if node.args and (why := _feature_probe(node.args[0], own)):
                out.append(f"{line}: {name} on a medmask feature ({why})")
        elif name in ("pytest.skip", "pytest.xfail", "skip", "xfail"):
            if not node.args and not node.keywords:
                out.append(f"{line}: {name}() without a reason")
            parent = parents.get(node)
            while parent is not None and not isinstance(parent, ast.If):
                parent = parents.get(parent)
            if parent is not None and (why := _feature_probe(parent.test, own)):
                out.append(f"{line}: {name} when a medmask feature is missing ({why})")
    return out


BAD_SKIPS = {
    "importorskip": 'import pytest\nnifti = pytest.importorskip("medmask.nifti")\n',
    "hasattr": (
        "import pytest\nfrom medmask import nifti\n"
        "def test_x():\n    if not hasattr(nifti, 'safe_filename'):\n        pytest.skip('later')\n"
    ),
    "signature": (
        "import inspect, pytest\nfrom medmask import MaskArchive\n"
        "_URL_READY = 'storage_options' in inspect.signature(MaskArchive).parameters\n"
        "pytestmark = pytest.mark.skipif(not _URL_READY, reason='not wired yet')\n"
    ),
    "attribute": (
        "import pytest\ndef test_x(ar):\n    if not ar.supports_attrs:\n"
        "        pytest.skip('no attributes')\n"
    ),
    "cli": (
        "import pytest\ndef test_x(top_help, command):\n    if command not in top_help:\n"
        "        pytest.skip('not a command')\n"
    ),
    "try-import": (
        "import pytest\ntry:\n    from medmask_monai import MaskArchiveDataset\n"
        "except ImportError:\n    MaskArchiveDataset = None\n"
    ),
    "no-reason": "import pytest, sys\n@pytest.mark.skipif(sys.platform == 'win32')\ndef test_x():\n    pass\n",
}


@pytest.mark.parametrize("name", sorted(BAD_SKIPS))
def test_the_skip_scanner_catches(name):
    assert skip_problems(BAD_SKIPS[name]), name


def test_the_skip_scanner_allows_platform_and_third_party_skips():
    ok = (
        "import os, sys, pytest\nnib = pytest.importorskip('nibabel')\n"
        "@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc')\n"
        "def test_x():\n    if not hasattr(os, 'fork'):\n        pytest.skip('no fork')\n"
    )
    assert skip_problems(ok) == []


def test_no_skip_hides_a_missing_medmask_feature():
    problems = _scan(skip_problems)
    assert problems == [], _report(FIX_SKIPS, problems)


# -- wall-clock assertions -------------------------------------------------------------------
def _is_clock(call: ast.Call) -> bool:
    """``time.perf_counter()``, or ``perf_counter()`` imported from time."""
    parts = _call_name(call).split(".")
    if len(parts) == 2:
        return parts[0] == "time" and parts[1] in CLOCKS
    return len(parts) == 1 and parts[0] in CLOCKS - {"time"}


def _reads_clock(node: ast.AST, tainted: set[str]) -> str | None:
    for n in ast.walk(node):
        if isinstance(n, ast.Call) and _is_clock(n):
            return f"{_call_name(n)}()"
        if isinstance(n, ast.Name) and n.id in tainted:
            return f"{n.id} (from a clock)"
        if isinstance(n, ast.Attribute) and n.attr in DURATION_NAMES:
            return f".{n.attr}"
        if (
            isinstance(n, ast.Subscript)
            and isinstance(n.slice, ast.Constant)
            and n.slice.value in DURATION_NAMES
        ):
            return f"[{n.slice.value!r}]"
    return None


def clock_problems(source: str, where: str = "<source>") -> list[str]:
    """Assertions in ``source`` (``assert``, or ``pytest.fail`` / ``raise`` under an ``if``)
    that compare a clock reading or a duration."""
    tree = ast.parse(source)
    out = []
    for func in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.Module)]:
        body = list(ast.walk(func)) if isinstance(func, ast.FunctionDef) else func.body
        tainted: set[str] = set()
        for _ in range(3):  # names computed from names computed from a clock
            for n in body:
                if isinstance(n, ast.Assign) and _reads_clock(n.value, tainted):
                    for t in n.targets:
                        for x in ast.walk(t):
                            if isinstance(x, ast.Name):
                                tainted.add(x.id)
        for n in body:
            why = None
            if (
                isinstance(n, ast.Assert)
                or isinstance(n, ast.If)
                and any(
                    isinstance(b, ast.Raise)
                    or _call_name(b.value if isinstance(b, ast.Expr) else b) == "pytest.fail"
                    for b in n.body
                )
            ):
                why = _reads_clock(n.test, tainted)
            if why:
                out.append(f"{where}:{n.lineno}: asserts on {why}")
    return sorted(set(out))


BAD_CLOCKS = {
    "direct": "import time\ndef test_x():\n    t0 = time.time()\n    f()\n    assert time.time() - t0 < 1\n",
    "via-name": (
        "import time\ndef test_x():\n    t0 = time.perf_counter()\n    f()\n"
        "    elapsed = time.perf_counter() - t0\n    assert elapsed < 1.2, elapsed\n"
    ),
    "monotonic-fail": (
        "import time, pytest\ndef test_x():\n    t = time.monotonic()\n    f()\n"
        "    if time.monotonic() - t > 5:\n        pytest.fail('slow')\n"
    ),
    "result-field": "def test_x(sweep):\n    assert sweep.max_seconds < 20\n",
    "result-key": "def test_x(r):\n    assert r['seconds'] < 3\n",
    "cpu": "import time\ndef test_x():\n    c = time.process_time()\n    assert time.process_time() - c < 2\n",
}


@pytest.mark.parametrize("name", sorted(BAD_CLOCKS))
def test_the_clock_scanner_catches(name):
    assert clock_problems(BAD_CLOCKS[name]), name


def test_the_clock_scanner_allows_timeouts_against_hangs():
    ok = (
        "import time\ndef test_x(ev, q, p):\n    assert ev.wait(10)\n    assert q.get(timeout=30)\n"
        "    deadline = time.monotonic() + 60\n    while time.monotonic() < deadline:\n"
        "        time.sleep(0.1)\n    p.join(timeout=5)\n"
    )
    assert clock_problems(ok) == []


def test_no_wall_clock_assertions():
    problems = _scan(clock_problems)
    assert problems == [], _report(FIX_CLOCKS, problems)


# -- sample data ---------------------------------------------------------------------------------
def test_tests_on_sample_data_carry_the_realdata_marker(request):
    """A test that uses ``real_case`` or ``interchange`` (directly or through a fixture) is
    marked ``realdata``, so that ``-m realdata`` runs them all and ``-m "not realdata"`` none."""
    unmarked = request.config.medmask_unmarked_real_data  # set by tests/conftest.py
    assert unmarked == [], _report(FIX_REALDATA, unmarked)
