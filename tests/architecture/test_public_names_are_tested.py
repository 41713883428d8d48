"""Every public name is used by a test: each name of ``medmask.__all__``,
``medmask_monai.__all__`` and ``medmask.io.__all__``, and each public method or property
that medmask's own classes among them define. A new public name without a test fails here
(add a test that calls it; tests/core/test_public_names.py holds the small direct ones).
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
MODULES = ("medmask", "medmask_monai", "medmask.io")
OWN = ("medmask", "medmask_monai")


def _test_text() -> str:
    me = Path(__file__).resolve()
    return "\n".join(
        p.read_text(encoding="utf-8")
        for p in sorted(TESTS.rglob("*.py"))
        if p.resolve() != me and "fixtures" not in p.relative_to(TESTS).parts
    )


def public_names() -> list[tuple[str, str]]:
    """``(where, name)``: the modules' ``__all__`` names and the members their own classes
    define (``where`` is ``module`` or ``module.Class``)."""
    out = []
    for modname in MODULES:
        if modname == "medmask_monai":
            pytest.importorskip("torch")
        module = importlib.import_module(modname)
        for name in module.__all__:
            out.append((modname, name))
            obj = getattr(module, name)
            if not inspect.isclass(obj) or issubclass(obj, BaseException):
                continue
            for cls in obj.__mro__:
                if not cls.__module__.startswith(OWN):
                    continue
                for member in vars(cls):
                    if not member.startswith("_"):
                        out.append((f"{modname}.{name}", member))
    return sorted(set(out))


def test_the_list_holds_the_documented_names():
    names = set(public_names())
    for expected in [
        ("medmask", "register_codec"),
        ("medmask", "__version__"),
        ("medmask.LabelMapping", "max_label"),
        ("medmask_monai.SelectLabels", "new_labels"),
        ("medmask.io", "split_suffix"),
        ("medmask.io.Target", "with_name"),
    ]:
        assert expected in names, expected


def test_every_public_name_is_used_by_a_test():
    text = _test_text()
    missing = []
    for where, name in public_names():
        member = "." in where and where not in MODULES
        pattern = rf"[.\"']{re.escape(name)}\b" if member else rf"\b{re.escape(name)}\b"
        if not re.search(pattern, text):
            missing.append(f"{where}: {name}")
    assert missing == [], (
        f"{len(missing)} public names no test uses (every name of medmask.__all__, "
        "medmask_monai.__all__ and medmask.io.__all__, and every public member of medmask's "
        "classes there, is called by some test: add a test that uses it, or take it out of "
        "__all__ if it is not public; docs/testing.md, 'Rules'):\n  " + "\n  ".join(missing)
    )
