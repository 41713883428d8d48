"""The class maps medmask ships: datasets' names and label numbers as they publish them.

Each is a JSON file in ``medmask/schemes/data/`` (package data) holding ``id``, ``title``,
``count``, ``source`` (URL, version and the exact table read) and ``classes``
(``{"label": "name"}``, exactly as the dataset spells the names). :func:`load_class_map`
reads and checks one; :func:`class_map_ids` lists them.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from ..errors import MaskValidationError, close_matches
from ..labeltable import LabelTable
from .errors import VocabularyError

__all__ = [
    "ClassMap",
    "load_class_map",
    "class_map_ids",
    "class_map_from_json",
    "read_data_json",
    "parse_json_strict",
]

_DATA = "data"
_NOT_MAPS = ("synonyms",)


def _no_duplicate_keys(where: str):
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise VocabularyError(f"{where}: a JSON object repeats the key {key!r}")
            out[key] = value
        return out

    return hook


def read_data_json(file_name: str) -> dict[str, Any]:
    """Read one JSON file of the package data, refusing repeated keys.

    Args:
        file_name: The file name inside ``medmask/schemes/data``.

    Returns:
        The JSON object.

    Raises:
        VocabularyError: The file is missing, is not JSON, is not an object, or an
            object in it repeats a key (JSON would silently keep the last one).
    """
    try:
        text = resources.files(__package__).joinpath(_DATA, file_name).read_text("utf-8")
    except FileNotFoundError:
        raise VocabularyError(f"{file_name}: not in medmask's package data") from None
    return parse_json_strict(text, file_name)


def parse_json_strict(text: str | bytes, where: str) -> dict[str, Any]:
    """Parse a JSON object, refusing repeated keys (JSON would silently keep the last).

    Args:
        text: The JSON text.
        where: The file name, for messages.

    Returns:
        The object.

    Raises:
        VocabularyError: Not valid JSON, not an object, or a repeated key.
    """
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicate_keys(where))
    except VocabularyError:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        raise VocabularyError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise VocabularyError(f"{where}: must hold a JSON object")
    return obj


@dataclass(frozen=True)
class ClassMap:
    """A dataset's published class map: its names with its label numbers, and where from.

    Attributes:
        id: The short name (``"amos22"``, ``"totalseg_v2"``...).
        title: What the dataset is.
        table: ``{name: label}`` as the dataset publishes it (one name per label).
        source: Where the table comes from (``url``, ``version``, and ``table``/``notes``/
            ``also`` where the file gives them).
        extra: The other fields of the file (``from_v1`` for TotalSegmentator v2).
    """

    id: str
    title: str
    table: LabelTable
    source: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.table)

    @classmethod
    def from_json(cls, text: str | bytes, where: str = "class map") -> ClassMap:
        """A class map from the text of a class-map file (the shipped files' format).

        Args:
            text: The JSON text: ``id``, ``title``, ``count``, ``source`` (with ``url``)
                and ``classes`` (``{"label": "name"}``).
            where: The file name, for messages.

        Returns:
            The class map.

        Raises:
            VocabularyError: Not valid JSON, a repeated key, or a check of
                :func:`class_map_from_json` fails.
        """
        return class_map_from_json(parse_json_strict(text, where), where)

    def name_of(self, label: int) -> str:
        """The published name of ``label``.

        Raises:
            MaskNotFoundError: The map has no such label.
        """
        return self.table.names_of(label)[0]


def _parse_classes(where: str, classes: object) -> LabelTable:
    if not isinstance(classes, dict) or not classes:
        raise VocabularyError(f"{where}: 'classes' must be a non-empty {{label: name}} object")
    table: dict[str, int] = {}
    seen: dict[int, str] = {}
    for key, name in classes.items():
        if not str(key).isdigit():
            raise VocabularyError(f"{where}: class key {key!r} is not a label number")
        label = int(key)
        if label in seen:  # "01" and "1"
            raise VocabularyError(
                f"{where}: label {label} is given twice ({seen[label]!r} and {name!r}); a "
                "vocabulary has one name per label number"
            )
        if not isinstance(name, str) or not name:
            raise VocabularyError(f"{where}: the name of label {label} must be a non-empty string")
        if name in table:
            raise VocabularyError(
                f"{where}: name {name!r} is given to labels {table[name]} and {label}"
            )
        seen[label] = name
        table[name] = label
    try:
        return LabelTable(table)
    except MaskValidationError as exc:  # label 0...
        raise VocabularyError(f"{where}: {exc.message}") from None


def class_map_from_json(obj: dict[str, Any], where: str) -> ClassMap:
    """Check and build a :class:`ClassMap` from the JSON object of a class-map file.

    Args:
        obj: The parsed file.
        where: The file name, for messages.

    Returns:
        The class map.

    Raises:
        VocabularyError: A field is missing, a label number is used twice, a name twice,
            a label is not a positive integer, or ``count`` disagrees with the classes.
    """
    for key in ("id", "title", "count", "source", "classes"):
        if key not in obj:
            raise VocabularyError(f"{where}: field {key!r} is missing")
    source = obj["source"]
    if not isinstance(source, dict) or not source.get("url"):
        raise VocabularyError(f"{where}: 'source' must give at least the 'url' it comes from")
    table = _parse_classes(where, obj["classes"])
    if obj["count"] != len(table):
        raise VocabularyError(
            f"{where}: 'count' says {obj['count']} classes, 'classes' holds {len(table)}"
        )
    known = {"id", "title", "count", "source", "classes"}
    extra = {k: v for k, v in obj.items() if k not in known}
    return ClassMap(str(obj["id"]), str(obj["title"]), table, dict(source), extra)


@functools.lru_cache(maxsize=1)
def class_map_ids() -> tuple[str, ...]:
    """The ids of the shipped class maps, sorted."""
    folder = resources.files(__package__).joinpath(_DATA)
    ids = [
        p.name[: -len(".json")]
        for p in folder.iterdir()
        if p.name.endswith(".json") and p.name[: -len(".json")] not in _NOT_MAPS
    ]
    return tuple(sorted(ids))


@functools.cache
def load_class_map(map_id: str) -> ClassMap:
    """One shipped class map.

    Args:
        map_id: Its id (see :func:`class_map_ids`), e.g. ``"amos22"``.

    Returns:
        The class map (cached: the same object on every call).

    Raises:
        VocabularyError: No such class map (the message lists close matches), or its
            file is not valid.
    """
    if map_id not in class_map_ids():
        raise VocabularyError(
            f"no class map named {map_id!r} (shipped: {', '.join(class_map_ids())})"
            + close_matches(map_id, class_map_ids())
        )
    where = f"{map_id}.json"
    cmap = class_map_from_json(read_data_json(where), where)
    if cmap.id != map_id:
        raise VocabularyError(f"{where}: its 'id' is {cmap.id!r}")
    return cmap
