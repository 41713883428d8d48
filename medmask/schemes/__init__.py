"""Label vocabularies: datasets' class maps, one canonical vocabulary, label schemes.

People train on unions of public datasets that name and number their organs
differently. This package ships, as data, the class maps of TotalSegmentator (v2 and v1),
AbdomenAtlas 1.1, AMOS 2022, BTCV, FLARE22 and the ten Medical Segmentation Decathlon
tasks, each with its source (:func:`load_class_map`); a :class:`Vocabulary` that maps
their names onto one canonical set (TotalSegmentator v2's names plus the classes it lacks)
with declared merges (derived classes: the lung lobes -> lung, left + right -> both); and
:class:`LabelScheme`, a target class list with numbers onto which a case's mask names are
mapped at index level (nothing decoded): per class the masks that make it (a derived
class paints the union of its parts), the classes a case lacks, the names nobody knows.

Example:
    >>> from medmask.schemes import get_scheme
    >>> m = get_scheme("amos").map(["liver", "gall_bladder", "kidney_left", "ct"])
    >>> m["gall bladder"].sources, m.label_table()["kidney_left"], list(m.unknown)
    (('gall_bladder',), 3, ['ct'])
"""

from __future__ import annotations

from .classmaps import ClassMap, class_map_ids, load_class_map
from .coverage import Coverage, coverage
from .errors import VocabularyError
from .matching import ClassSource, SchemeMapping
from .partial import ANNOTATED_KEY, CaseLabels, annotated_names, case_labels
from .scheme import LabelScheme, SchemeClass, get_scheme, scheme_names
from .vocabulary import Vocabulary, default_vocabulary, name_key

__all__ = [
    "ANNOTATED_KEY",
    "CaseLabels",
    "annotated_names",
    "case_labels",
    "ClassMap",
    "ClassSource",
    "Coverage",
    "LabelScheme",
    "SchemeClass",
    "SchemeMapping",
    "Vocabulary",
    "VocabularyError",
    "class_map_ids",
    "coverage",
    "default_vocabulary",
    "get_scheme",
    "load_class_map",
    "name_key",
    "scheme_names",
]
