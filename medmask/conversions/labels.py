"""Label tables: ``{name: label}`` from the forms people keep them in, and back.

Read (:func:`read_label_table`, :func:`read_label_table_attrs`):

* JSON ``{name: label}``; JSON ``{label: name}`` (TotalSegmentator's ``class_map``,
  keys as strings); a JSON list of names (label = position + 1);
* nnU-Net's ``dataset.json`` (``{"labels": {"background": 0, "liver": 1, ...}}``, v2; or
  ``{"labels": {"0": "background", "1": "liver"}}``, v1); ``background`` / label 0 dropped;
* ITK-SNAP label description files (``IDX R G B A VIS MSH "LABEL"`` lines; colours kept,
  label 0 "Clear Label" dropped);
* text: ``label name`` (or ``label,name``) lines, or bare names (label = line number),
  ``#`` comments allowed.

TotalSegmentator's names inside a NIfTI header: a NIfTI extension with code 0 holding a
``<CaretExtension>`` XML whose ``<Label Key="k" Red=".." Green=".." Blue=".." Alpha="..">``
elements hold the names in CDATA (:func:`parse_caret_xml`, :func:`caret_xml`).
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..attrs import palette_color
from ..errors import MaskValidationError
from ..labeltable import LabelTable

__all__ = [
    "read_label_table",
    "read_label_table_attrs",
    "labels_arg",
    "check_table_covers",
    "parse_caret_xml",
    "caret_xml",
    "nnunet_dataset_json",
    "MAX_TABLE_BYTES",
]

#: Largest label table file read (tables are small; a huge file is not one).
MAX_TABLE_BYTES = 16 * 2**20
_NOT_JSON = object()
_ITKSNAP_LINE = re.compile(
    r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+([0-9.eE+-]+)\s+(\d+)\s+(\d+)\s+(\".*\"|\S.*)$"
)


def _as_table(path: object, table: Mapping) -> LabelTable:
    try:
        return LabelTable(table)
    except MaskValidationError as exc:
        raise MaskValidationError(f"{path}: {exc}") from None


def _read_text(path: str | os.PathLike) -> str:
    p = Path(path)
    size = p.stat().st_size
    if size > MAX_TABLE_BYTES:
        raise MaskValidationError(
            f"{path}: {size:,} bytes is too large for a label table (limit {MAX_TABLE_BYTES:,})"
        )
    try:
        return p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise MaskValidationError(f"{path}: a label table must be UTF-8 text") from None


def read_label_table(path: str | os.PathLike) -> LabelTable:
    """Read a label table (any of the forms in the module docstring).

    Args:
        path: The table file.

    Returns:
        ``{name: label}`` in file order, without background (label 0): a
        :class:`~medmask.labeltable.LabelTable`, whose names may share a label (a merge,
        for painting label maps; code that splits a label map into masks calls
        :meth:`~medmask.labeltable.LabelTable.require_one_to_one`).

    Raises:
        MaskValidationError: The file cannot be understood, a name appears twice, or a
            label is not a positive integer.
        OSError: The file cannot be read.
    """
    return read_label_table_attrs(path)[0]


def read_label_table_attrs(path: str | os.PathLike) -> tuple[LabelTable, dict[str, dict]]:
    """Read a label table and the per-name attributes it holds (ITK-SNAP colours).

    Args:
        path: The table file.

    Returns:
        ``(table, {name: attrs})`` (the table as :func:`read_label_table` returns it);
        ``attrs`` holds ``{"color": [r, g, b]}`` for tables that carry colours, else it is
        empty.

    Raises:
        MaskValidationError: The file cannot be understood, a name appears twice, or a
            label is not a positive integer.
        OSError: The file cannot be read.
    """
    text = _read_text(path)
    try:
        obj = json.loads(text)
    except ValueError:
        obj = _NOT_JSON
    if obj is _NOT_JSON:
        return _read_text_table(path, text)
    if isinstance(obj, list):
        if not all(isinstance(n, str) for n in obj):
            raise MaskValidationError(f"{path}: a JSON list label table must hold names (strings)")
        return _as_table(path, {n: k for k, n in enumerate(obj, start=1)}), {}
    if isinstance(obj, dict):
        if "labels" in obj and isinstance(obj["labels"], dict):  # nnU-Net dataset.json
            return _nnunet_labels(path, obj["labels"]), {}
        if obj and all(str(k).strip().isdigit() for k in obj):
            if not all(isinstance(v, str) for v in obj.values()):
                raise MaskValidationError(f"{path}: a {{label: name}} table must map to names")
            return _as_table(path, {v: int(k) for k, v in obj.items() if int(k) != 0}), {}
        return _as_table(path, obj), {}
    raise MaskValidationError(f"{path}: label table must be a JSON object or list, or a text file")


def _nnunet_labels(path: object, labels: dict) -> LabelTable:
    table: dict[str, int] = {}
    if labels and all(str(k).strip().isdigit() for k in labels):  # v1: {"0": "background"}
        pairs = [(v, int(k)) for k, v in labels.items()]
    else:
        pairs = list(labels.items())
    for name, label in pairs:
        if isinstance(label, list):
            raise MaskValidationError(
                f"{path}: label {name!r} is an nnU-Net region ({label}); medmask needs one "
                "integer per name (write a table of the single labels)"
            )
        if not isinstance(name, str):
            raise MaskValidationError(f"{path}: nnU-Net label names must be strings, got {name!r}")
        if label == 0:
            continue
        table[name] = label
    return _as_table(path, table)


def _read_text_table(path: object, text: str) -> tuple[LabelTable, dict[str, dict]]:
    table: dict[str, int] = {}
    attrs: dict[str, dict] = {}
    lines = [ln.strip() for ln in text.splitlines()]
    itksnap = any(
        "ITK-SnAP" in ln or "ITK-SNAP" in ln.upper() for ln in lines if ln.startswith("#")
    )
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if itksnap or (lines and all(_ITKSNAP_LINE.match(ln) for ln in lines)):
        for ln in lines:
            m = _ITKSNAP_LINE.match(ln)
            if not m:
                raise MaskValidationError(
                    f'{path}: not an ITK-SNAP label line (IDX R G B A VIS MSH "LABEL"): {ln[:80]!r}'
                )
            label = int(m.group(1))
            try:
                name = shlex.split(m.group(8))[0] if m.group(8).startswith('"') else m.group(8)
            except (ValueError, IndexError):
                name = m.group(8).strip('"')
            if label == 0:
                continue
            if name in table:
                raise MaskValidationError(f"{path}: name {name!r} appears twice")
            table[name] = label
            rgb = [min(255, int(m.group(k))) for k in (2, 3, 4)]
            attrs[name] = {"color": rgb}
        return _as_table(path, table), attrs
    for k, ln in enumerate(lines, start=1):
        parts = ln.replace(",", " ").replace("\t", " ").split(None, 1)
        if len(parts) == 2 and parts[0].isdigit():
            name, label = parts[1].strip(), int(parts[0])
        else:
            name, label = ln, k
        if name in table:
            raise MaskValidationError(f"{path}: name {name!r} appears twice")
        table[name] = label
    return _as_table(path, table), attrs


def labels_arg(labels: Mapping[str, int] | LabelTable | str | os.PathLike) -> LabelTable:
    """The label table a ``labels=`` argument names: a mapping, a
    :class:`~medmask.labeltable.LabelTable` or the path of a table file.

    Args:
        labels: ``{name: label}`` (names may share a label: a merge), a table, or a path for
            :func:`read_label_table`.

    Returns:
        The :class:`~medmask.labeltable.LabelTable` (the one rule: unique non-empty names,
        positive labels, merges allowed).

    Raises:
        MaskValidationError: An invalid table.
    """
    if isinstance(labels, str | os.PathLike):
        return read_label_table(labels)
    return LabelTable(labels)


def check_table_covers(
    path: object, present: Iterable[int], labels: Mapping[str, int], *, drop_unlisted: bool = False
) -> list[int]:
    """Refuse a table that misses labels present in a file (their voxels would be lost).

    Args:
        path: The file, for the message.
        present: The non-zero labels found in the file.
        labels: ``{name: label}``.
        drop_unlisted: Return the missing labels instead of raising.

    Returns:
        The labels present in the file but not in the table (sorted; empty when
        the table covers the file).

    Raises:
        MaskValidationError: Labels are missing and ``drop_unlisted`` is false.
    """
    missing = sorted(set(int(v) for v in present) - {int(v) for v in labels.values()})
    if missing and not drop_unlisted:
        shown = ", ".join(map(str, missing[:12])) + (" ..." if len(missing) > 12 else "")
        raise MaskValidationError(
            f"{path}: labels [{shown}] are not in the label table ({len(labels)} entries); "
            "they would lose their voxels (add them to the table, or drop them with "
            "drop_unlisted=True / --drop-unlisted)"
        )
    return missing


# -- TotalSegmentator's CaretExtension ------------------------------------------------------
#: Largest header extension parsed as a label table.
MAX_CARET_BYTES = 8 * 2**20


def parse_caret_xml(
    raw: bytes | str, *, where: object = "NIfTI extension"
) -> tuple[dict[str, int], dict[str, dict]]:
    """The label table in a ``<CaretExtension>`` XML (TotalSegmentator's ``--ml`` names).

    Args:
        raw: The extension content.
        where: Words naming the source, for messages.

    Returns:
        ``({name: label}, {name: {"color": [r, g, b]}})``; label 0 (background) is
        left out. Empty when the XML holds no ``<Label>`` elements.

    Raises:
        MaskValidationError: Too large, holds a DTD/entities (refused: never expanded),
            is not well-formed XML, has a non-integer ``Key``, or two names share a
            label.
    """
    import xml.etree.ElementTree as ET

    data = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
    if len(data) > MAX_CARET_BYTES:
        raise MaskValidationError(f"{where}: {len(data):,}-byte label extension is too large")
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise MaskValidationError(f"{where}: label XML with a DTD or entities is refused")
    try:
        root = ET.fromstring(data.rstrip(b"\x00 \n\r\t"))
    except ET.ParseError as exc:
        raise MaskValidationError(f"{where}: label XML is not well formed ({exc})") from None
    table: dict[str, int] = {}
    attrs: dict[str, dict] = {}
    for el in root.iter("Label"):
        key = (el.get("Key") or "").strip()
        if not key.lstrip("-").isdigit():
            raise MaskValidationError(f"{where}: <Label Key={key!r}> is not an integer label")
        label = int(key)
        name = (el.text or "").strip()
        if label == 0:
            continue
        if not name:
            name = f"label_{label}"
        if name in table:
            raise MaskValidationError(
                f"{where}: name {name!r} is given to labels {table[name]} and {label}"
            )
        table[name] = label
        rgb = []
        for c in ("Red", "Green", "Blue"):
            try:
                v = float(el.get(c, "nan"))
            except ValueError:
                v = float("nan")
            rgb.append(v)
        if all(0.0 <= v <= 1.0 for v in rgb):
            attrs[name] = {"color": [round(v * 255) for v in rgb]}
    return _as_table(where, table), attrs


def caret_xml(table: Mapping[str, int], colors: Mapping[str, Iterable[int]] | None = None) -> bytes:
    """A ``<CaretExtension>`` label table as TotalSegmentator writes it (code 0 extension).

    Args:
        table: ``{name: label}``.
        colors: Optional ``{name: [r, g, b]}`` (0-255); other labels get a fixed palette.

    Returns:
        UTF-8 XML bytes.
    """
    colors = colors or {}
    rows = []
    for k, (name, label) in enumerate(table.items()):
        rgb = colors.get(name)
        if rgb is None:
            rgb = palette_color(k)
        r, g, b = (max(0, min(255, int(v))) / 255.0 for v in list(rgb)[:3])
        safe = name.replace("]]>", "]]]]><![CDATA[>")
        rows.append(
            f'<Label Key="{int(label)}" Red="{r:.4f}" Green="{g:.4f}" Blue="{b:.4f}" '
            f'Alpha="1"><![CDATA[{safe}]]></Label>'
        )
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<CaretExtension>\n'
        "<Date><![CDATA[2026-01-01T00:00:00]]></Date>\n"
        '<VolumeInformation Index="0">\n<LabelTable>\n'
        + "\n".join(rows)
        + "\n</LabelTable>\n<StudyMetaDataLinkSet>\n</StudyMetaDataLinkSet>\n"
        "<VolumeType><![CDATA[Label]]></VolumeType>\n</VolumeInformation>\n</CaretExtension>\n"
    )
    return xml.encode("utf-8")


def default_color(k: int) -> list[int]:
    """The default colour of the ``k``-th mask (0-based) when none is stored: medmask's one
    palette (:func:`medmask.attrs.palette_color`, as the pictures use)."""
    return list(palette_color(k))


def nnunet_dataset_json(
    table: Mapping[str, int], *, num_training: int, file_ending: str = ".nii.gz", name: str = ""
) -> dict:
    """nnU-Net v2's ``dataset.json`` for a set of label maps.

    Args:
        table: ``{name: label}`` (label 0 is ``background``, added here); names that share
            a label (a merge) are one entry, named by
            :meth:`~medmask.labeltable.LabelTable.class_name` (``dataset.json`` lists one
            name per label).
        num_training: Number of cases in ``labelsTr``.
        file_ending: The files' suffix.
        name: Dataset description.

    Returns:
        The JSON object (``channel_names`` says CT; edit it for other images).
    """
    labels = {"background": 0}
    labels.update(LabelTable(table).class_table())
    return {
        "channel_names": {"0": "CT"},
        "labels": labels,
        "numTraining": int(num_training),
        "file_ending": file_ending,
        "name": name,
        "description": "label maps exported by medmask unpack-tree",
    }
