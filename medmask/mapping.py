"""Bidirectional name <-> label mapping."""

from __future__ import annotations

import json
import numbers
from collections.abc import ItemsView, Iterator, Mapping

from .errors import MaskNotFoundError, MaskValidationError, close_matches

__all__ = ["LabelMapping"]


def _check_label(label: object, name: str) -> int:
    if isinstance(label, bool) or not isinstance(label, numbers.Integral):
        raise MaskValidationError(
            f"label of {name!r} must be an integer, got {label!r} ({type(label).__name__})"
        )
    label = int(label)
    if label < 0:
        raise MaskValidationError(f"label of {name!r} must be non-negative, got {label}")
    return label


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise MaskValidationError(f"mask names must be strings, got {name!r}")
    if not name:
        raise MaskValidationError("mask names must not be empty")
    return name


class LabelMapping:
    """A bidirectional map between mask names and integer labels.

    Names and labels are both unique: assigning a name a label that another name
    already has, or adding a name twice with different labels, raises
    ``ValueError`` (:class:`~medmask.errors.MaskValidationError`) naming both.

    Args:
        name_to_label: Initial ``{name: label}`` pairs (any mapping or another
            ``LabelMapping``). Labels are non-negative integers.

    Raises:
        MaskValidationError: A name is not a non-empty string, a label is not a
            non-negative integer, or two names share a label.

    Example:
        >>> m = LabelMapping({"liver": 1, "spleen": 2})
        >>> m["liver"], m.inverse(2), "spleen" in m, len(m)
        (1, 'spleen', True, 2)
        >>> LabelMapping.from_json(m.to_json()) == m
        True
    """

    __slots__ = ("_name_to_label", "_label_to_name")

    def __init__(self, name_to_label: Mapping[str, int] | None = None) -> None:
        if type(name_to_label) is dict and len(name_to_label) == 1:  # one mask, one label
            ((name, label),) = name_to_label.items()
            if type(name) is str and name and type(label) is int and label >= 0:
                self._name_to_label = {name: label}
                self._label_to_name = {label: name}
                return
        elif type(name_to_label) is dict and all(
            type(k) is str and k and type(v) is int and v >= 0 for k, v in name_to_label.items()
        ):  # the common case (a stored index row, a literal): checked in one pass
            inverse = {v: k for k, v in name_to_label.items()}
            if len(inverse) == len(name_to_label):
                self._name_to_label = dict(name_to_label)
                self._label_to_name = inverse
                return
        self._name_to_label: dict[str, int] = {}
        self._label_to_name: dict[int, str] = {}
        if name_to_label is not None:  # anything else, one pair at a time (precise errors)
            if not isinstance(name_to_label, Mapping | LabelMapping):
                raise MaskValidationError(
                    f"LabelMapping expects a mapping of name -> label, got {type(name_to_label).__name__}"
                )
            for name, label in name_to_label.items():
                self[name] = label

    # -- construction -----------------------------------------------------------------
    @classmethod
    def from_json(cls, json_str: str | bytes) -> LabelMapping:
        """Build a mapping from a JSON object ``{"name": label, ...}``.

        Args:
            json_str: The JSON text (``str`` or UTF-8 ``bytes``).

        Returns:
            The mapping.

        Raises:
            MaskValidationError: The text is not a JSON object of name -> integer label.
        """
        try:
            obj = json.loads(json_str)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MaskValidationError(f"label mapping is not valid JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise MaskValidationError(
                f"label mapping JSON must be an object, got {type(obj).__name__}"
            )
        return cls(obj)

    def to_json(self) -> str:
        """Serialise to a compact JSON object ``{"name": label}`` in insertion order."""
        return json.dumps(self._name_to_label, separators=(",", ":"), ensure_ascii=False)

    def to_dict(self) -> dict[str, int]:
        """Return a plain ``{name: label}`` copy."""
        return dict(self._name_to_label)

    # -- queries -------------------------------------------------------------------------
    def has_label(self, label: int) -> bool:
        """Whether some name maps to ``label``."""
        try:
            return int(label) in self._label_to_name
        except (TypeError, ValueError):
            return False

    def inverse(self, label: int) -> str:
        """Return the name of ``label``.

        Raises:
            MaskNotFoundError: No name has this label (a ``KeyError``).
        """
        try:
            return self._label_to_name[int(label)]
        except (KeyError, TypeError, ValueError):
            known = ", ".join(str(v) for v in sorted(self._label_to_name)) or "none"
            raise MaskNotFoundError(
                f"label {label!r} is not in the mapping (labels: {known})"
            ) from None

    def items(self) -> ItemsView[str, int]:
        """``(name, label)`` pairs in insertion order."""
        return self._name_to_label.items()

    def names(self) -> list[str]:
        """Names in insertion order."""
        return list(self._name_to_label)

    def labels(self) -> list[int]:
        """Labels in insertion order of their names."""
        return list(self._name_to_label.values())

    def max_label(self) -> int:
        """The largest label, or 0 for an empty mapping."""
        return max(self._label_to_name, default=0)

    # -- mapping protocol ---------------------------------------------------------------
    def __getitem__(self, name: str) -> int:
        try:
            return self._name_to_label[name]
        except KeyError:
            raise MaskNotFoundError(
                f"name {name!r} is not in the mapping" + close_matches(name, self._name_to_label)
            ) from None

    def __setitem__(self, name: str, label: int) -> None:
        name = _check_name(name)
        label = _check_label(label, name)
        owner = self._label_to_name.get(label)
        if owner is not None and owner != name:
            raise MaskValidationError(
                f"label {label} is already used by {owner!r}; cannot also give it to {name!r}"
            )
        old = self._name_to_label.get(name)
        if old is not None and old != label:
            raise MaskValidationError(
                f"name {name!r} already has label {old}; cannot relabel it to {label}"
            )
        self._name_to_label[name] = label
        self._label_to_name[label] = name

    def __contains__(self, name: object) -> bool:
        return name in self._name_to_label

    def __iter__(self) -> Iterator[str]:
        return iter(self._name_to_label)

    def __len__(self) -> int:
        return len(self._name_to_label)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LabelMapping):
            return self._name_to_label == other._name_to_label
        if isinstance(other, Mapping):
            return self._name_to_label == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, so not hashable

    def __repr__(self) -> str:
        body = ", ".join(f"{n!r}: {lab}" for n, lab in self._name_to_label.items())
        return f"LabelMapping({{{body}}})"

    def copy(self) -> LabelMapping:
        """A shallow copy."""
        return LabelMapping(self._name_to_label)
