"""Slicer's ``TerminologyEntry`` strings <-> medmask's coded attributes (``category``,
``type``, ``type_modifier``, ``region``, ``region_modifier``; codes ``scheme^value^meaning``)."""

from __future__ import annotations

__all__ = ["parse_terminology", "terminology_string"]

_CODED = ("category", "type", "type_modifier", "region", "region_modifier")
_DEFAULT_CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
_DEFAULT_ANATOMIC = "Anatomic codes - DICOM master list"


def _code(text: str) -> dict | None:
    parts = text.split("^")
    if len(parts) != 3 or not parts[1].strip():
        return None
    return {"scheme": parts[0], "value": parts[1], "meaning": parts[2]}


def parse_terminology(entry: str) -> tuple[dict, dict]:
    """Slicer's ``TerminologyEntry`` string as coded attributes.

    Args:
        entry: ``context~category~type~typeModifier~anatomicContext~region~regionModifier``.

    Returns:
        ``(coded, contexts)``: ``{"category": {...}, "type": {...}, ...}`` (only the
        codes present) and ``{"terminology_context": ..., "anatomic_context": ...}``.
    """
    parts = entry.split("~")
    parts += [""] * (7 - len(parts))
    coded = {}
    for key, text in zip(_CODED, (parts[1], parts[2], parts[3], parts[5], parts[6]), strict=True):
        c = _code(text)
        if c:
            coded[key] = c
    contexts = {"terminology_context": parts[0], "anatomic_context": parts[4]}
    return coded, contexts


def terminology_string(attrs: dict) -> str | None:
    """Slicer's ``TerminologyEntry`` string for a mask's coded attributes (``None`` without
    ``category`` and ``type``)."""
    if not (isinstance(attrs.get("category"), dict) and isinstance(attrs.get("type"), dict)):
        return None
    slicer = attrs.get("slicer") if isinstance(attrs.get("slicer"), dict) else {}

    def code(key: str) -> str:
        c = attrs.get(key)
        if not isinstance(c, dict):
            return "^^"
        return "^".join(
            str(c.get(k, "")).replace("~", "-").replace("|", "/")
            for k in ("scheme", "value", "meaning")
        )

    return "~".join(
        [
            str(slicer.get("terminology_context") or _DEFAULT_CONTEXT),
            code("category"),
            code("type"),
            code("type_modifier"),
            str(slicer.get("anatomic_context") or _DEFAULT_ANATOMIC),
            code("region"),
            code("region_modifier"),
        ]
    )
