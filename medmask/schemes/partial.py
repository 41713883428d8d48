"""Partial labels: what a case's annotators covered, and what a loader paints from it.

A dataset labelled for some structures only (LiTS: the liver; KiTS: the kidneys) must tell
"annotated and empty" from "not annotated": a class the annotators never looked at is not
background. The rule, documented in ``docs/format.md`` ("Archive attributes", the reserved
key ``annotated``):

* an archive whose attributes hold ``"annotated": [names]`` was annotated for exactly those
  names: a listed name is *annotated* (present when its mask holds voxels, absent when its
  mask is stored with zero voxels or not stored at all); a stored mask that is not listed
  is kept but counts as not annotated (e.g. a model's prediction stored beside the
  reference);
* an archive without the key was annotated for its stored masks and nothing else (a
  zero-voxel mask still means "looked for, absent").

:func:`case_labels` maps a case onto a scheme under this rule: the availability of each
class (one bool per class, in the scheme's order; what a partial-label loss masks with)
and the label table that paints the stored masks of the available classes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..labeltable import LabelTable
from .coverage import Coverage, coverage
from .errors import VocabularyError
from .matching import SchemeMapping
from .scheme import LabelScheme

__all__ = ["ANNOTATED_KEY", "CaseLabels", "annotated_names", "case_labels"]

#: The reserved archive attribute that lists the names the annotators covered.
ANNOTATED_KEY = "annotated"


def annotated_names(stored: Iterable[str], archive_attrs: Mapping | None = None) -> list[str]:
    """The mask names a case was annotated for.

    Args:
        stored: The names of the masks the archive stores.
        archive_attrs: The archive's attributes (``MaskArchive.archive_attrs``, a
            catalogue's ``archive_attrs``); ``None`` or ``{}`` when it has none.

    Returns:
        ``archive_attrs["annotated"]`` when the archive records it, else the stored names.

    Raises:
        VocabularyError: ``annotated`` is not a list of names.
    """
    listed = (archive_attrs or {}).get(ANNOTATED_KEY)
    if listed is None:
        return list(stored)
    if not isinstance(listed, list | tuple) or not all(isinstance(n, str) for n in listed):
        raise VocabularyError(
            f"archive attribute {ANNOTATED_KEY!r} must be a list of mask names, "
            f"got {str(listed)[:80]}"
        )
    return list(listed)


@dataclass(frozen=True)
class CaseLabels:
    """One case mapped onto a scheme, with what its annotators covered.

    Attributes:
        mapping: The annotated names mapped onto the scheme.
        table: ``{stored mask: scheme label}`` for the masks that paint an available
            class (a derived class: all of its stored parts, sharing its label).
        available: One bool per class of the scheme, in its order: whether the case was
            annotated for it (a loss must ignore the others).
        stored: The names of the masks the archive stores.
    """

    mapping: SchemeMapping
    table: LabelTable
    available: tuple[bool, ...]
    stored: frozenset[str]

    def coverage(self, voxels: Mapping[str, int]) -> dict[str, Coverage]:
        """Each class's state (present, empty, not annotated) from stored voxel counts;
        an annotated name without a stored mask counts as zero voxels.

        Args:
            voxels: ``{stored mask: voxel count}``.

        Returns:
            ``{class name: Coverage}`` in the scheme's order.
        """
        counts = {n: 0 for c in self.mapping.classes for n in c.sources}
        counts.update((n, v) for n, v in voxels.items() if n in counts)
        return coverage(self.mapping, counts)


def case_labels(
    scheme: LabelScheme,
    stored: Iterable[str],
    archive_attrs: Mapping | None = None,
    *,
    source: str | None = None,
    include_partial: bool = False,
) -> CaseLabels:
    """Map one case onto ``scheme``, honouring what it was annotated for.

    Args:
        scheme: The target scheme.
        stored: The archive's mask names.
        archive_attrs: The archive's attributes (its ``annotated`` list, if any).
        source: The class-map id the names come from (see :meth:`LabelScheme.map`).
        include_partial: Count a derived class with some annotated parts as available.

    Returns:
        A :class:`CaseLabels`.

    Raises:
        VocabularyError: A bad ``annotated`` attribute.
    """
    names = list(stored)  # archive order: a mapping's sources keep it
    mapping = scheme.map(annotated_names(names, archive_attrs), source=source)
    table = mapping.label_table(include_partial=include_partial).subset(names)
    available = tuple(mapping.availability(include_partial=include_partial))
    return CaseLabels(mapping, table, available, frozenset(names))
