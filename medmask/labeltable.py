"""Label tables: which mask names are painted with which label number.

One type, :class:`LabelTable`, and one rule for every place that paints masks into a
label map or reads a label map back into masks (the MONAI loaders' ``names=``,
``unpack``/``unpack-tree --labels``, the label schemes of :mod:`medmask.schemes`):

* a table is ``{name: label}``; names are non-empty strings, each listed once;
* labels are positive integers: 0 is the background and is refused;
* several names may share one label: a **merge** (``kidney_left`` and ``kidney_right``
  both 3 paint one "kidney" class). Painting a merge is always possible; splitting a label
  map back into masks is not, so readers of label maps call
  :meth:`LabelTable.require_one_to_one`.

Unlike :class:`~medmask.mapping.LabelMapping` (the labels stored inside one mask, unique
both ways), a label table describes an *output*: a label map to paint, or the channels of
a training target.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np

from .errors import MaskNotFoundError, MaskValidationError, close_matches
from .ops import smallest_int_dtype

__all__ = ["LabelTable"]

_U64_MAX = 2**64 - 1


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise MaskValidationError(f"label table names must be strings, got {name!r}")
    if not name:
        raise MaskValidationError("label table names must not be empty")
    return name


def _check_label(name: str, label: object) -> int:
    if type(label) is int and 0 < label <= _U64_MAX:  # the common case, checked fast
        return label
    if isinstance(label, bool) or not isinstance(label, numbers.Integral):
        raise MaskValidationError(
            f"label of {name!r} must be an integer, got {label!r} ({type(label).__name__})"
        )
    value = int(label)
    if value == 0:
        raise MaskValidationError(
            f"label of {name!r} is 0, the background; give it a label of 1 or more "
            "(or leave the name out of the table)"
        )
    if value < 0:
        raise MaskValidationError(f"label of {name!r} must be positive, got {value}")
    if value > _U64_MAX:
        raise MaskValidationError(f"label of {name!r} ({value}) does not fit in 64 bits")
    return value


def _pairs(source: object) -> list[tuple[object, object]]:
    """``(name, label)`` pairs from a mapping, a ``LabelMapping``-like object or a list."""
    if isinstance(source, Mapping):
        return list(source.items())
    if isinstance(source, str | bytes):
        raise MaskValidationError(
            f"a label table is a {{name: label}} mapping or a list of names, got the string "
            f"{source!r} (a single name: pass [{source!r}]; a file: read it with "
            "medmask.nifti.read_label_table)"
        )
    if hasattr(source, "items") and callable(source.items):  # LabelMapping
        return list(source.items())
    if isinstance(source, Sequence | Iterable):
        names = list(source)
        dup = sorted({str(n) for n in names if names.count(n) > 1})
        if dup:
            raise MaskValidationError(f"label table names appear more than once: {dup}")
        return [(n, k) for k, n in enumerate(names, start=1)]
    raise MaskValidationError(
        f"a label table is a {{name: label}} mapping or a list of names, "
        f"got {type(source).__name__}"
    )


class LabelTable(Mapping[str, int]):
    """An immutable ``{name: label}`` table for painting masks into a label map.

    Names are unique non-empty strings; labels are positive integers; several names may
    share a label (a merge: their masks paint one class). Build it from a mapping, from a
    list of names (labelled 1..N in order) or from another table.

    Args:
        table: ``{name: label}``, a list of names, a ``LabelMapping`` or a ``LabelTable``.
        class_names: Optional ``{label: class name}``, the name of a class in outputs that
            list one name per label (nnU-Net's ``dataset.json``): ``{3: "kidney"}`` for
            ``kidney_left`` and ``kidney_right`` both 3. Unnamed labels are named by
            :meth:`class_name`. Taken from ``table`` when it is a ``LabelTable`` and this is
            ``None``.

    Raises:
        MaskValidationError: A name is not a non-empty string or is listed twice, a label
            is not a positive integer (0 is the background), or a class name is given for
            a label the table does not use, is empty, or names two labels.

    Example:
        >>> t = LabelTable({"liver": 1, "kidney_left": 2, "kidney_right": 2})
        >>> t.labels(), t.names_of(2), t.max_label(), str(t.smallest_dtype())
        ([1, 2], ('kidney_left', 'kidney_right'), 2, 'uint8')
        >>> LabelTable(["liver", "spleen"])["spleen"]
        2
    """

    __slots__ = ("_table", "_classes", "_by_label")

    def __init__(
        self,
        table: Mapping[str, int] | Iterable[str] | LabelTable | None = None,
        *,
        class_names: Mapping[int, str] | None = None,
    ) -> None:
        if isinstance(table, LabelTable):
            self._table: dict[str, int] = dict(table._table)
            inherited = table._classes if class_names is None else None
        else:
            pairs = [] if table is None else _pairs(table)
            self._table = {}
            for name, label in pairs:
                name = _check_name(name)
                self._table[name] = _check_label(name, label)
            inherited = None
        self._by_label: dict[int, tuple[str, ...]] = {}
        for name, label in self._table.items():
            self._by_label[label] = (*self._by_label.get(label, ()), name)
        self._classes: dict[int, str] = (
            dict(inherited) if inherited is not None else self._check_classes(class_names or {})
        )

    def _check_classes(self, class_names: Mapping[int, str]) -> dict[int, str]:
        out: dict[int, str] = {}
        owner: dict[str, int] = {}
        for label, cname in class_names.items():
            if isinstance(label, bool) or not isinstance(label, numbers.Integral):
                raise MaskValidationError(f"class_names keys are labels (int), got {label!r}")
            if int(label) not in self._by_label:
                raise MaskValidationError(
                    f"class name {cname!r} is given for label {label}, which no name of the "
                    f"table uses (labels: {self.labels()})"
                )
            if not isinstance(cname, str) or not cname:
                raise MaskValidationError(f"class name of label {label} must be a non-empty string")
            if cname in owner:
                raise MaskValidationError(
                    f"class name {cname!r} is given to labels {owner[cname]} and {label}"
                )
            owner[cname] = int(label)
            out[int(label)] = cname
        return out

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_json(cls, text: str | bytes) -> LabelTable:
        """A table from JSON: ``{"name": label}`` or a list of names.

        Args:
            text: The JSON text.

        Returns:
            The table.

        Raises:
            MaskValidationError: Not valid JSON, or not a valid table.
        """
        try:
            obj = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MaskValidationError(f"label table is not valid JSON: {exc}") from None
        if not isinstance(obj, dict | list):
            raise MaskValidationError(
                f"label table JSON must be an object or a list, got {type(obj).__name__}"
            )
        return cls(obj)

    def to_json(self) -> str:
        """The table as a compact JSON object ``{"name": label}`` in table order."""
        return json.dumps(self._table, separators=(",", ":"), ensure_ascii=False)

    def to_dict(self) -> dict[str, int]:
        """A plain ``{name: label}`` copy, in table order."""
        return dict(self._table)

    def subset(self, names: Iterable[str]) -> LabelTable:
        """The table restricted to ``names`` (table order kept; unknown names ignored).

        Args:
            names: The names to keep.

        Returns:
            A new table; class names of the labels still used are kept.
        """
        keep = set(names)
        sub = {n: v for n, v in self._table.items() if n in keep}
        labels = set(sub.values())
        return LabelTable(sub, class_names={k: c for k, c in self._classes.items() if k in labels})

    # -- queries ---------------------------------------------------------------------------
    def names(self) -> list[str]:
        """The names, in table order."""
        return list(self._table)

    def labels(self) -> list[int]:
        """The distinct labels, in increasing order (the channel order of a one-hot target)."""
        return sorted(self._by_label)

    def names_of(self, label: int) -> tuple[str, ...]:
        """The names painted with ``label``, in table order.

        Raises:
            MaskNotFoundError: No name has this label.
        """
        try:
            return self._by_label[int(label)]
        except (KeyError, TypeError, ValueError):
            raise MaskNotFoundError(
                f"label {label!r} is not in the table (labels: {self.labels()})"
            ) from None

    def max_label(self) -> int:
        """The largest label, or 0 for an empty table."""
        return max(self._by_label, default=0)

    def channel_of(self, name: str) -> int:
        """The channel (0-based position of its label in :meth:`labels`) of ``name``.

        Raises:
            MaskNotFoundError: ``name`` is not in the table.
        """
        return self.labels().index(self[name])

    def merges(self) -> dict[int, tuple[str, ...]]:
        """``{label: names}`` for the labels that several names share."""
        return {k: v for k, v in sorted(self._by_label.items()) if len(v) > 1}

    @property
    def is_one_to_one(self) -> bool:
        """Whether every label has exactly one name (no merge)."""
        return len(self._by_label) == len(self._table)

    def require_one_to_one(self, where: object = None) -> LabelTable:
        """Refuse merges where a label map is split back into masks.

        Args:
            where: The file or table, for the message.

        Returns:
            This table (for chaining).

        Raises:
            MaskValidationError: Some label has several names: its voxels cannot be told
                apart.
        """
        merged = self.merges()
        if merged:
            label, names = next(iter(merged.items()))
            raise MaskValidationError(
                f"label {label} is given to {len(names)} names ({', '.join(names)}): a label "
                "map cannot be split into those masks; give each name its own label",
                path=where,
            )
        return self

    def class_name(self, label: int) -> str:
        """The name of the class painted with ``label``.

        Returns:
            The class name given for it, else its one name, else its names joined by
            ``"+"`` (``"kidney_left+kidney_right"``).

        Raises:
            MaskNotFoundError: No name has this label.
        """
        names = self.names_of(label)
        return self._classes.get(int(label)) or (names[0] if len(names) == 1 else "+".join(names))

    def class_table(self) -> dict[str, int]:
        """``{class name: label}``, one entry per label in increasing order.

        What a consumer that lists one name per label needs (nnU-Net's ``dataset.json``,
        a label map's own mapping).
        """
        return {self.class_name(k): k for k in self.labels()}

    def smallest_dtype(self, *, torch_safe: bool = False) -> np.dtype:
        """The smallest integer dtype that holds :meth:`max_label`.

        Args:
            torch_safe: Use only types torch's ordinary kernels support: ``uint8``, then
                ``int16``, ``int32``, ``int64`` (torch has no ``flip`` for ``uint16``).

        Returns:
            ``uint8``, ``uint16``, ``uint32``, ``uint64`` (or the torch-safe series):
            :func:`medmask.ops.smallest_int_dtype`, the one rule.

        Raises:
            MaskValidationError: The largest label does not fit (a torch-safe type, or 64
                bits).
        """
        return smallest_int_dtype(0, self.max_label(), torch_safe=torch_safe)

    # -- mapping protocol --------------------------------------------------------------------
    def __getitem__(self, name: str) -> int:
        try:
            return self._table[name]
        except (KeyError, TypeError):
            raise MaskNotFoundError(
                f"name {name!r} is not in the label table" + close_matches(name, self._table)
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._table

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LabelTable):
            return self._table == other._table and self._classes == other._classes
        if isinstance(other, Mapping):
            return self._table == dict(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((tuple(self._table.items()), tuple(sorted(self._classes.items()))))

    def __repr__(self) -> str:
        body = ", ".join(f"{n!r}: {v}" for n, v in self._table.items())
        extra = f", class_names={self._classes!r}" if self._classes else ""
        return f"LabelTable({{{body}}}{extra})"
