"""The canonical vocabulary: class names, their synonyms, and derived classes.

A :class:`Vocabulary` knows a set of **canonical** class names, **synonyms** that map
other spellings onto them (globally, or only for names from one dataset: *scoped*), and
**derived** classes, each the union of its parts (``lung = lung_left + lung_right``,
``lung_left = lung_upper_lobe_left + lung_lower_lobe_left``). It is checked when built:
two synonyms giving one name two classes, a synonym that re-points a canonical name, a
derived class with unknown parts, or a cycle of derived classes raise
:class:`~medmask.schemes.VocabularyError`.

Names are compared by :func:`name_key`: lower case, each run of characters other than
letters and digits made one ``_``; ``"Gall Bladder"`` and ``"gall_bladder"`` are one name.

:func:`default_vocabulary` is the shipped one (``data/synonyms.json``): TotalSegmentator
v2's 117 names, the extra classes of the other shipped datasets, their synonyms and the
declared merges.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence

from ..errors import close_matches
from .classmaps import load_class_map, read_data_json
from .errors import VocabularyError

__all__ = ["Vocabulary", "name_key", "default_vocabulary"]

_NON_ALNUM = re.compile(r"[^0-9a-z]+")
Pairs = Mapping[str, str] | Iterable[tuple[str, str]]


def name_key(name: str) -> str:
    """The form names are compared in: lower case, non-alphanumeric runs made one ``_``.

    Args:
        name: A class or mask name.

    Returns:
        The key (``"Prostate/Uterus"`` -> ``"prostate_uterus"``).

    Raises:
        VocabularyError: ``name`` is not a string or has no letter or digit.
    """
    if not isinstance(name, str):
        raise VocabularyError(f"class names must be strings, got {name!r}")
    key = _key(name)
    if not key:
        raise VocabularyError(f"class name {name!r} has no letter or digit")
    return key


@functools.lru_cache(maxsize=65536)  # the same names come back in every case
def _key(name: str) -> str:
    return _NON_ALNUM.sub("_", name.lower()).strip("_")


def _pairs(entries: Pairs | None) -> list[tuple[str, str]]:
    if entries is None:
        return []
    return list(entries.items()) if isinstance(entries, Mapping) else list(entries)


class Vocabulary:
    """Canonical class names, synonyms and derived classes; resolves names to classes.

    Args:
        classes: The canonical class names (derived class names are added to them).
        synonyms: ``{other spelling: canonical name}`` (or ``(spelling, name)`` pairs),
            for names from any source.
        scoped: ``{source id: synonyms}``: spellings that mean a class only for names
            from that source (a class-map id such as ``"msd_task03_liver"``).
        derived: ``{derived class: [parts]}``; parts are canonical names or synonyms,
            and may be derived classes themselves.
        name: A name for messages.

    Raises:
        VocabularyError: Two classes with one key, a synonym giving a name two classes
            (or re-pointing a canonical name), a synonym or part that names no class
            (close matches listed), a derived class without parts or with a part twice,
            or a cycle of derived classes.

    Example:
        >>> v = Vocabulary(["kidney_left", "kidney_right"], synonyms={"left kidney": "kidney_left"},
        ...                derived={"kidney": ["kidney_left", "kidney_right"]})
        >>> v.canonical("Left Kidney"), v.parts("kidney"), v.leaves("kidney")
        ('kidney_left', ('kidney_left', 'kidney_right'), ('kidney_left', 'kidney_right'))
    """

    def __init__(
        self,
        classes: Iterable[str],
        *,
        synonyms: Pairs | None = None,
        scoped: Mapping[str, Pairs] | None = None,
        derived: Mapping[str, Sequence[str]] | None = None,
        name: str = "vocabulary",
    ) -> None:
        self.name = name
        self._leaves: dict[str, tuple[str, ...]] = {}
        self._display: dict[str, str] = {}
        for cname in [*classes, *(derived or {})]:
            self._add_class(cname)
        self._synonyms = self._check_synonyms(_pairs(synonyms), "synonyms")
        self._scoped: dict[str, dict[str, str]] = {}
        for source, entries in (scoped or {}).items():
            if not isinstance(source, str) or not source:
                raise VocabularyError(f"{name}: scoped synonyms need a source id, got {source!r}")
            self._scoped[source] = self._check_synonyms(_pairs(entries), f"synonyms of {source!r}")
        self._derived: dict[str, tuple[str, ...]] = {}
        for dname, parts in (derived or {}).items():
            self._derived[self._display[name_key(dname)]] = self._check_parts(dname, parts)
        self._check_cycles()
        self._raw_derived = {d: list(p) for d, p in (derived or {}).items()}

    # -- construction checks -----------------------------------------------------------------
    def _add_class(self, cname: str) -> None:
        key = name_key(cname)
        other = self._display.get(key)
        if other is not None and other != cname:
            raise VocabularyError(
                f"{self.name}: classes {other!r} and {cname!r} are one name once normalised "
                f"({key!r}); keep one"
            )
        self._display[key] = cname

    def _check_synonyms(self, pairs: list[tuple[str, str]], what: str) -> dict[str, str]:
        out: dict[str, str] = {}
        spelled: dict[str, str] = {}
        for alias, target in pairs:
            key = name_key(alias)
            canonical = self._display.get(name_key(target)) if isinstance(target, str) else None
            if canonical is None:
                raise VocabularyError(
                    f"{self.name}: {what}: {alias!r} maps to {target!r}, which is not a class"
                    + close_matches(str(target), list(self._display.values()))
                )
            own = self._display.get(key)
            if own is not None and own != canonical:
                raise VocabularyError(
                    f"{self.name}: {what}: {alias!r} maps to {canonical!r}, but {own!r} is a "
                    "class of its own; a synonym cannot re-point a canonical name"
                )
            if key in out and out[key] != canonical:
                raise VocabularyError(
                    f"{self.name}: {what}: {spelled[key]!r} maps to {out[key]!r} and {alias!r} "
                    f"maps to {canonical!r}: one name ({key!r}) cannot mean two classes"
                )
            out[key] = canonical
            spelled.setdefault(key, alias)
        return out

    def _check_parts(self, dname: str, parts: Sequence[str]) -> tuple[str, ...]:
        if isinstance(parts, str) or not parts:
            raise VocabularyError(f"{self.name}: derived class {dname!r} needs a list of parts")
        resolved: list[str] = []
        unknown = []
        for part in parts:
            canonical = self.resolve(part)
            if canonical is None:
                unknown.append(part)
            elif canonical in resolved:
                raise VocabularyError(f"{self.name}: derived class {dname!r} lists {part!r} twice")
            else:
                resolved.append(canonical)
        if unknown:
            raise VocabularyError(
                f"{self.name}: derived class {dname!r} has parts that are no class: {unknown}"
                + close_matches(str(unknown[0]), list(self._display.values()))
            )
        return tuple(resolved)

    def _check_cycles(self) -> None:
        done: set[str] = set()

        def visit(node: str, path: list[str]) -> None:
            if node in path:
                cycle = " -> ".join([*path[path.index(node) :], node])
                raise VocabularyError(f"{self.name}: derived classes form a cycle: {cycle}")
            if node in done:
                return
            for part in self._derived.get(node, ()):
                visit(part, [*path, node])
            done.add(node)

        for node in self._derived:
            visit(node, [])

    # -- lookups -------------------------------------------------------------------------------
    def resolve(self, name: str, source: str | None = None) -> str | None:
        """The canonical class of ``name``, or ``None`` when the vocabulary has none.

        Args:
            name: A class or mask name, in any spelling :func:`name_key` equates.
            source: The source (class-map id) the name comes from; its scoped synonyms
                apply first.

        Returns:
            The canonical name, or ``None``.
        """
        try:
            key = name_key(name)
        except VocabularyError:
            return None
        if source is not None:
            scoped = self._scoped.get(source, {}).get(key)
            if scoped is not None:
                return scoped
        return self._display.get(key) or self._synonyms.get(key)

    def canonical(self, name: str, source: str | None = None) -> str:
        """Like :meth:`resolve`, but an unknown name raises.

        Raises:
            VocabularyError: ``name`` names no class (the message lists close matches, and
                the sources for which it has a meaning).
        """
        found = self.resolve(name, source)
        if found is None:
            raise VocabularyError(f"{self.name}: {name!r} is no known class" + self.hint(name))
        return found

    def hint(self, name: str) -> str:
        """What to say about an unknown name: close matches, and sources it has a meaning for."""
        try:
            key = name_key(name)
        except VocabularyError:
            return ""
        meanings = [f"{src} ({syn[key]})" for src, syn in self._scoped.items() if key in syn]
        if meanings:
            return (
                f" (it has a meaning only for names from {', '.join(meanings)}: pass that source)"
            )
        return close_matches(key, [*self._display.values(), *self._synonyms])

    def parts(self, name: str) -> tuple[str, ...] | None:
        """The direct parts of a derived class (canonical names), or ``None``."""
        found = self.resolve(name)
        return None if found is None else self._derived.get(found)

    def leaves(self, name: str) -> tuple[str, ...]:
        """The classes ``name`` is made of, expanded until no part is derived.

        A class that is not derived is its own leaf.

        Raises:
            VocabularyError: ``name`` is no known class.
        """
        start = self.canonical(name)
        cached = self._leaves.get(start)
        if cached is not None:
            return cached
        out: list[str] = []

        def walk(node: str) -> None:
            parts = self._derived.get(node)
            if not parts:
                if node not in out:
                    out.append(node)
                return
            for part in parts:
                walk(part)

        walk(start)
        self._leaves[start] = tuple(out)
        return self._leaves[start]

    def names(self) -> list[str]:
        """The canonical class names (derived classes included)."""
        return list(self._display.values())

    def derived(self) -> dict[str, tuple[str, ...]]:
        """``{derived class: its direct parts}``."""
        return dict(self._derived)

    def is_known(self, name: str, source: str | None = None) -> bool:
        """Whether ``name`` resolves to a class."""
        return self.resolve(name, source) is not None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.is_known(name)

    def __len__(self) -> int:
        return len(self._display)

    def __repr__(self) -> str:
        return (
            f"Vocabulary({self.name!r}: {len(self._display)} classes, {len(self._derived)} "
            f"derived, {len(self._synonyms)} synonyms, {len(self._scoped)} scoped sources)"
        )

    def extend(
        self,
        *,
        classes: Iterable[str] = (),
        synonyms: Pairs | None = None,
        scoped: Mapping[str, Pairs] | None = None,
        derived: Mapping[str, Sequence[str]] | None = None,
        name: str | None = None,
    ) -> Vocabulary:
        """A new vocabulary with more classes, synonyms or derived classes (checked again).

        Args:
            classes: More canonical class names.
            synonyms: More synonyms for every source.
            scoped: More scoped synonyms (``{source: synonyms}``).
            derived: More derived classes.
            name: The new vocabulary's name (default: this one's).

        Returns:
            The new vocabulary; this one is unchanged.

        Raises:
            VocabularyError: As the constructor, for the union.
        """
        merged_scoped = {src: list(syn.items()) for src, syn in self._scoped.items()}
        for src, entries in (scoped or {}).items():
            merged_scoped.setdefault(src, []).extend(_pairs(entries))
        return Vocabulary(
            [*self._display.values(), *classes],
            synonyms=[*self._synonyms.items(), *_pairs(synonyms)],
            scoped=merged_scoped,
            derived={**self._raw_derived, **(derived or {})},
            name=name or self.name,
        )


@functools.lru_cache(maxsize=1)
def default_vocabulary() -> Vocabulary:
    """The shipped vocabulary (``medmask/schemes/data/synonyms.json``).

    Canonical names: the class names of the class map named by its ``base``
    (TotalSegmentator v2, task ``total``) and its ``extra_classes``; then its
    ``derived`` classes, ``synonyms`` and ``scoped`` synonyms.

    Returns:
        The vocabulary (built once, then cached).

    Raises:
        VocabularyError: The shipped file is not valid (a bug of this release).
    """
    data = read_data_json("synonyms.json")
    base = load_class_map(data["base"])
    return Vocabulary(
        [*base.table.names(), *data.get("extra_classes", {})],
        synonyms=data.get("synonyms", {}),
        scoped=data.get("scoped", {}),
        derived=data.get("derived", {}),
        name=str(data.get("id", "synonyms.json")),
    )
