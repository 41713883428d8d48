"""Label schemes: the target classes of a training set, with their numbers.

A :class:`LabelScheme` is a list of classes, each a name, a label number and the
canonical class it means. The built-in ones are the shipped class maps (``get_scheme(
"totalseg")``, ``"amos"``, ``"btcv"``...); a scheme of one's own is built from
``{class: label}`` or a list of classes. :meth:`LabelScheme.map` maps a case's mask names
onto it at index level (:mod:`medmask.schemes.matching`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from ..errors import MaskValidationError, close_matches
from ..labeltable import LabelTable
from .classmaps import ClassMap, class_map_ids, load_class_map
from .errors import VocabularyError
from .matching import SchemeMapping, match_names
from .vocabulary import Vocabulary, default_vocabulary

__all__ = ["LabelScheme", "SchemeClass", "get_scheme", "scheme_names", "SCHEME_ALIASES"]

#: Short names of the built-in schemes: ``{alias: class-map id}``.
SCHEME_ALIASES = {
    "totalseg": "totalseg_v2",
    "totalsegmentator": "totalseg_v2",
    "total": "totalseg_v2",
    "abdomenatlas": "abdomenatlas_1_1",
    "amos": "amos22",
    "flare": "flare22",
}


@dataclass(frozen=True)
class SchemeClass:
    """One class of a scheme.

    Attributes:
        name: The class name (as the scheme spells it).
        label: Its label number (1 or more).
        canonical: The canonical class it means.
    """

    name: str
    label: int
    canonical: str


class LabelScheme:
    """A target class list with numbers; maps case mask names onto it.

    Args:
        name: The scheme's name.
        classes: ``{class name: label}``, or a list of class names (labels 1..N).
        vocabulary: Resolves class and mask names (default: :func:`default_vocabulary`).
        source: The class-map id the class names come from (its scoped synonyms apply).
        canonical: ``{class name: canonical class}`` for classes whose name the
            vocabulary does not resolve (or resolves differently from what is meant).
        description: Free text (the built-in schemes: the dataset's title).

    Raises:
        VocabularyError: Two classes with one label number or one name, a label that is
            not a positive integer, a class the vocabulary does not know (close matches
            listed), two classes meaning one canonical class, or two classes that overlap
            (one contains a part of the other, e.g. ``lung`` and ``lung_left``).

    Example:
        >>> scheme = LabelScheme("mine", {"liver": 1, "kidney": 2})
        >>> m = scheme.map(["liver", "kidney_left", "kidney_right", "spleen"])
        >>> m.label_table().to_dict(), list(m.unused)
        ({'liver': 1, 'kidney_left': 2, 'kidney_right': 2}, ['spleen'])
    """

    def __init__(
        self,
        name: str,
        classes: Mapping[str, int] | Sequence[str],
        *,
        vocabulary: Vocabulary | None = None,
        source: str | None = None,
        canonical: Mapping[str, str] | None = None,
        description: str = "",
    ) -> None:
        self.name = name
        self.vocabulary = vocabulary if vocabulary is not None else default_vocabulary()
        self.source = source
        self.description = description
        try:
            table = LabelTable(classes)
        except MaskValidationError as exc:
            raise VocabularyError(f"scheme {name!r}: {exc.message}") from None
        if not table.is_one_to_one:
            label, names = next(iter(table.merges().items()))
            raise VocabularyError(
                f"scheme {name!r}: label {label} is given to {', '.join(map(repr, names))}; a "
                "scheme has one class per label number (a merge is a derived class: declare "
                "it in the vocabulary, or name one class and map the masks onto it)"
            )
        self._classes = tuple(
            SchemeClass(cname, label, self._canonical(cname, canonical or {}))
            for cname, label in sorted(table.items(), key=lambda kv: kv[1])
        )
        self._check_disjoint()

    def _canonical(self, cname: str, given: Mapping[str, str]) -> str:
        if cname in given:
            return self.vocabulary.canonical(given[cname])
        found = self.vocabulary.resolve(cname, self.source)
        if found is None:
            raise VocabularyError(
                f"scheme {self.name!r}: class {cname!r} is no class of the vocabulary"
                + self.vocabulary.hint(cname)
                + "; give canonical={...} for it, or extend the vocabulary"
            )
        return found

    def _check_disjoint(self) -> None:
        owner: dict[str, SchemeClass] = {}
        for cls in self._classes:
            for leaf in self.vocabulary.leaves(cls.canonical):
                other = owner.get(leaf)
                if other is not None:
                    what = (
                        "both mean"
                        if other.canonical == cls.canonical
                        else f"overlap: both contain {leaf!r} of"
                    )
                    raise VocabularyError(
                        f"scheme {self.name!r}: classes {other.name!r} and {cls.name!r} {what} "
                        f"{other.canonical!r}; the classes of a scheme must not overlap"
                    )
                owner[leaf] = cls

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_class_map(cls, cmap: ClassMap, *, vocabulary: Vocabulary | None = None) -> LabelScheme:
        """The scheme of a dataset's published class map (its names and numbers).

        Args:
            cmap: The class map.
            vocabulary: Default: :func:`default_vocabulary`.

        Returns:
            The scheme; its :attr:`source` is the class map's id.
        """
        return cls(
            cmap.id,
            cmap.table.to_dict(),
            vocabulary=vocabulary,
            source=cmap.id,
            description=cmap.title,
        )

    # -- queries -------------------------------------------------------------------------------
    @property
    def classes(self) -> tuple[SchemeClass, ...]:
        """The classes, in label order."""
        return self._classes

    def names(self) -> list[str]:
        """The class names, in label order."""
        return [c.name for c in self._classes]

    def labels(self) -> list[int]:
        """The label numbers, increasing."""
        return [c.label for c in self._classes]

    def label_of(self, name: str) -> int:
        """The label of class ``name`` (its scheme name or any spelling of its class).

        Raises:
            VocabularyError: The scheme has no such class.
        """
        return self.class_of(name).label

    def class_of(self, name: str) -> SchemeClass:
        """The class called ``name``, by its scheme name or any spelling of its class.

        Raises:
            VocabularyError: The scheme has no such class (close matches listed).
        """
        for cls in self._classes:
            if cls.name == name:
                return cls
        canonical = self.vocabulary.resolve(name, self.source)
        for cls in self._classes:
            if cls.canonical == canonical:
                return cls
        raise VocabularyError(
            f"scheme {self.name!r} has no class {name!r}" + close_matches(name, self.names())
        )

    def table(self) -> LabelTable:
        """The scheme itself as ``{class name: label}``."""
        return LabelTable({c.name: c.label for c in self._classes})

    def __iter__(self) -> Iterator[SchemeClass]:
        return iter(self._classes)

    def __len__(self) -> int:
        return len(self._classes)

    def __repr__(self) -> str:
        return f"LabelScheme({self.name!r}, {len(self._classes)} classes)"

    # -- mapping -------------------------------------------------------------------------------
    def map(self, names: Iterable[str], *, source: str | None = None) -> SchemeMapping:
        """Map a case's mask names onto this scheme (names only: nothing is decoded).

        Args:
            names: The mask names (``MaskArchive.all_names()``, catalogue rows...).
            source: The class-map id the names come from, when known (``"amos22"``:
                AMOS's ``"arota"``; ``"msd_task03_liver"``: its ``"cancer"``).

        Returns:
            A :class:`~medmask.schemes.SchemeMapping`: per class, the masks that make it
            (a derived class: the union of its parts); the unknown names with close
            matches; the known names the scheme has no class for.
        """
        return match_names(
            self.name,
            [(c.name, c.label, c.canonical) for c in self._classes],
            names,
            self.vocabulary,
            source=source,
        )

    def label_table(self, names: Iterable[str], *, source: str | None = None) -> LabelTable:
        """Shortcut: ``self.map(names, source=source).label_table()``."""
        return self.map(names, source=source).label_table()


def scheme_names() -> list[str]:
    """The names :func:`get_scheme` accepts: class-map ids and their short aliases."""
    return sorted({*class_map_ids(), *SCHEME_ALIASES})


def get_scheme(name: str, *, vocabulary: Vocabulary | None = None) -> LabelScheme:
    """A built-in scheme: a shipped class map, by id or short name.

    Args:
        name: ``"totalseg"`` (TotalSegmentator v2, 117 classes), ``"totalseg_v1"``,
            ``"abdomenatlas"`` (1.1), ``"amos"``, ``"btcv"``, ``"flare22"``,
            ``"msd_task03_liver"``... (see :func:`scheme_names`).
        vocabulary: Default: :func:`default_vocabulary`.

    Returns:
        The scheme, with the dataset's class names and numbers.

    Raises:
        VocabularyError: No such scheme (close matches listed).
    """
    map_id = SCHEME_ALIASES.get(name, name)
    if map_id not in class_map_ids():
        raise VocabularyError(
            f"no scheme named {name!r} (built-in: {', '.join(scheme_names())})"
            + close_matches(name, scheme_names())
        )
    return LabelScheme.from_class_map(load_class_map(map_id), vocabulary=vocabulary)
