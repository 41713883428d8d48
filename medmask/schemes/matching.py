"""Mapping an archive's mask names onto a label scheme, at index level.

:func:`match_names` takes the names only (``MaskArchive.all_names()``, a catalogue's rows):
no mask is decoded or rewritten. For each class of the scheme it finds the source masks
that make it: the mask that *is* the class (in any spelling the vocabulary knows), or else
the masks of its parts (a derived class, e.g. ``lung`` from the five lobes), whose union is
painted on read. The result, a :class:`SchemeMapping`, also says which classes a case does
not have, which names the vocabulary does not know (with close matches) and which known
names the scheme has no class for; nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..labeltable import LabelTable
from .errors import VocabularyError
from .vocabulary import Vocabulary

__all__ = ["ClassSource", "SchemeMapping", "match_names", "COMPLETE", "PARTIAL", "ABSENT"]

#: Every part of the class is among the source masks.
COMPLETE = "complete"
#: Some parts of a derived class are there, some are not.
PARTIAL = "partial"
#: Nothing of the class is there.
ABSENT = "absent"


@dataclass(frozen=True)
class ClassSource:
    """How one class of a scheme is made from a case's masks.

    Attributes:
        name: The class name in the scheme.
        label: Its label number in the scheme.
        canonical: Its canonical class.
        sources: The source mask names whose union paints it (archive order).
        missing: Canonical parts not found among the masks (empty when complete).
    """

    name: str
    label: int
    canonical: str
    sources: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        """``"complete"``, ``"partial"`` (a derived class with some parts) or ``"absent"``."""
        if not self.sources:
            return ABSENT
        return PARTIAL if self.missing else COMPLETE

    @property
    def is_merge(self) -> bool:
        """Whether several source masks are painted as this one class."""
        return len(self.sources) > 1


@dataclass(frozen=True)
class SchemeMapping:
    """A case's mask names mapped onto a scheme (the result of :func:`match_names`).

    Attributes:
        scheme: The scheme's name.
        classes: One :class:`ClassSource` per class, in the scheme's order.
        unknown: ``{name: hint}`` for names the vocabulary does not know; the hint lists
            close matches.
        unused: ``{name: reason}`` for known names the scheme has no class for (not in the
            scheme, or a coarser class than the scheme's, which cannot be split).
        duplicates: ``{canonical class: names}`` where several masks are one class
            (``gall_bladder`` and ``gallbladder`` in one archive): all are painted.
    """

    scheme: str
    classes: tuple[ClassSource, ...]
    unknown: dict[str, str] = field(default_factory=dict)
    unused: dict[str, str] = field(default_factory=dict)
    duplicates: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __getitem__(self, name: str) -> ClassSource:
        for cls in self.classes:
            if cls.name == name:
                return cls
        raise VocabularyError(f"scheme {self.scheme!r} has no class {name!r}")

    def available(self, *, include_partial: bool = False) -> list[str]:
        """The classes this case can paint (complete ones; partial ones too if asked)."""
        ok = (COMPLETE, PARTIAL) if include_partial else (COMPLETE,)
        return [c.name for c in self.classes if c.status in ok]

    def not_available(self, *, include_partial: bool = False) -> list[str]:
        """The classes this case cannot paint (the complement of :meth:`available`)."""
        have = set(self.available(include_partial=include_partial))
        return [c.name for c in self.classes if c.name not in have]

    def partial(self) -> list[str]:
        """Derived classes of which only some parts are there."""
        return [c.name for c in self.classes if c.status == PARTIAL]

    def availability(self, *, include_partial: bool = False) -> list[bool]:
        """One bool per class of the scheme, in its order: can this case paint it."""
        have = set(self.available(include_partial=include_partial))
        return [c.name in have for c in self.classes]

    def label_table(self, *, include_partial: bool = False) -> LabelTable:
        """The label table a loader or ``unpack`` paints this case with.

        Source mask -> scheme label; the masks of a derived class share its label (a
        merge); the class names are the scheme's.

        Args:
            include_partial: Also paint derived classes of which some parts are missing
                (the class is then smaller than it should be).

        Returns:
            A :class:`~medmask.LabelTable` (empty when the case has none of the classes).
        """
        have = set(self.available(include_partial=include_partial))
        table: dict[str, int] = {}
        names: dict[int, str] = {}
        for cls in sorted(self.classes, key=lambda c: c.label):
            if cls.name in have:
                table.update(dict.fromkeys(cls.sources, cls.label))
                names[cls.label] = cls.name
        return LabelTable(table, class_names=names)

    def summary(self) -> str:
        """A few lines for people: what is painted, merged, missing, unknown, unused."""
        merged = [f"{c.name} <- {' + '.join(c.sources)}" for c in self.classes if c.is_merge]
        lines = [
            f"scheme {self.scheme!r}: {len(self.available())} of {len(self.classes)} classes",
        ]
        if merged:
            lines.append("merged: " + "; ".join(merged))
        if self.partial():
            lines.append("partial (not painted by default): " + ", ".join(self.partial()))
        missing = [c.name for c in self.classes if c.status == ABSENT]
        if missing:
            lines.append("not available: " + ", ".join(missing))
        if self.unknown:
            lines.append("unknown: " + "; ".join(f"{n!r}{h}" for n, h in self.unknown.items()))
        if self.unused:
            shown = ", ".join(list(self.unused)[:8]) + (" ..." if len(self.unused) > 8 else "")
            lines.append(f"unused ({len(self.unused)}, see .unused): {shown}")
        return "\n".join(lines)


def _index(names: Iterable[str], vocabulary: Vocabulary, source: str | None):
    """``{canonical: [mask names]}`` and ``{unknown name: hint}``."""
    by_class: dict[str, list[str]] = {}
    unknown: dict[str, str] = {}
    for name in names:
        if not isinstance(name, str):
            raise VocabularyError(f"mask names must be strings, got {name!r}")
        canonical = vocabulary.resolve(name, source)
        if canonical is None:
            unknown[name] = vocabulary.hint(name)
        else:
            by_class.setdefault(canonical, []).append(name)
    return by_class, unknown


def _find(
    canonical: str, by_class: dict[str, list[str]], vocabulary: Vocabulary
) -> tuple[list[str], list[str]]:
    """The mask names that make ``canonical`` and its parts that are not there."""
    direct = by_class.get(canonical)
    if direct:
        return list(direct), []
    parts = vocabulary.parts(canonical)
    if not parts:
        return [], [canonical]
    found: list[str] = []
    missing: list[str] = []
    for part in parts:
        f, m = _find(part, by_class, vocabulary)
        found += f
        missing += m
    return found, missing


def _why_unused(
    leaves: tuple[str, ...], scheme_leaves: dict[str, str], by_name: dict[str, ClassSource]
) -> str:
    owners = sorted({scheme_leaves[leaf] for leaf in leaves if leaf in scheme_leaves})
    if not owners:
        return "the scheme has no class for it"
    if len(owners) == 1 and all(leaf in scheme_leaves for leaf in leaves):
        taken = by_name[owners[0]].sources
        return f"class {owners[0]!r} is made from {', '.join(taken)}"
    return f"covers {', '.join(owners)} of the scheme; a coarser class cannot be split"


def match_names(
    scheme: str,
    classes: Iterable[tuple[str, int, str]],
    names: Iterable[str],
    vocabulary: Vocabulary,
    *,
    source: str | None = None,
) -> SchemeMapping:
    """Map mask names onto a scheme's classes (index level: names only).

    Use :meth:`LabelScheme.map <medmask.schemes.LabelScheme.map>`; this is the plain
    function under it.

    Args:
        scheme: The scheme's name, for the result and messages.
        classes: ``(class name, label, canonical class)`` per class, in scheme order;
            the classes must not overlap (checked when the scheme is built).
        names: The case's mask names (archive order is kept in the sources).
        vocabulary: Resolves the names.
        source: The class-map id the names come from (its scoped synonyms apply).

    Returns:
        The :class:`SchemeMapping`.

    Raises:
        VocabularyError: A name is not a string.
    """
    names = list(names)
    by_class, unknown = _index(names, vocabulary, source)
    order = {n: k for k, n in enumerate(names)}
    out: list[ClassSource] = []
    used: set[str] = set()
    for cname, label, canonical in classes:
        found, missing = _find(canonical, by_class, vocabulary)
        found.sort(key=order.__getitem__)
        used.update(found)
        out.append(ClassSource(cname, label, canonical, tuple(found), tuple(missing)))
    by_name = {c.name: c for c in out}
    scheme_leaves = {leaf: c.name for c in out for leaf in vocabulary.leaves(c.canonical)}
    unused = {
        name: _why_unused(
            vocabulary.leaves(vocabulary.resolve(name, source)), scheme_leaves, by_name
        )
        for name in names
        if name not in used and name not in unknown
    }
    duplicates = {c: tuple(ns) for c, ns in by_class.items() if len(ns) > 1}
    return SchemeMapping(scheme, tuple(out), unknown, unused, duplicates)
