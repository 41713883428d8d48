"""Per-mask attributes and the per-mask ``extra`` record (formats 2.1 and 2.2, ``.msk``).

Every mask stored in a version-2 file may carry an ``extra`` JSON object (see
``docs/format.md``, "Per-mask extras"):

* ``"centroid"`` (format 2.1 archives and ``.msk`` files): ``[z, y, x]``, the mean voxel
  index of the mask's non-zero voxels in the in-memory ``(z, y, x)`` grid (absent for an
  empty mask). Format 2.2 archives keep the centroid in an index column of its own
  (:mod:`medmask.format.v2.rows`); either way statistics come from the index alone.
* ``"attrs"``: the mask's attributes, an object with these documented keys (any other
  key is kept as it is, provided it is JSON):

  ===================  =======================================================
  ``color``            ``[r, g, b]``, three integers 0-255
  ``description``      a string
  ``category``,        coded concepts, each ``{"scheme": str, "value": str,
  ``type``,            "meaning": str}`` (DICOM CodingSchemeDesignator,
  ``type_modifier``,   CodeValue, CodeMeaning; other string keys such as
  ``region``,          ``"version"`` are allowed)
  ``region_modifier``
  ``label_value``      the mask's label number in the file it came from (int >= 0)
  ===================  =======================================================

Writers call :func:`validate_attrs` (:class:`MaskValidationError` on bad input);
readers call :func:`parse_extra` (:class:`CorruptFileError` on a bad stored record,
unknown keys of ``extra`` ignored for forward compatibility).

An archive as a whole may carry attributes too (format 2.3, ``MaskArchive.archive_attrs``):
the same limits, and the reserved keys of :data:`ARCHIVE_KEYS` (``source``, ``grid``,
``annotated``), checked by :func:`validate_archive_attrs` / :func:`parse_archive_attrs`.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import CorruptFileError, MaskValidationError

__all__ = [
    "KNOWN_ATTRS",
    "CODED_ATTRS",
    "MAX_ATTRS_BYTES",
    "MAX_ATTRS_DEPTH",
    "validate_attrs",
    "parse_extra",
    "ARCHIVE_KEYS",
    "SOURCE_KEYS",
    "GRID_KINDS",
    "validate_archive_attrs",
    "parse_archive_attrs",
    "make_extra",
    "centroid_of",
    "PALETTE",
    "palette_color",
]

#: Attribute keys coded as DICOM code triplets.
CODED_ATTRS = ("category", "type", "type_modifier", "region", "region_modifier")
#: Attribute keys with a documented meaning (others are free and kept as they are).
KNOWN_ATTRS = ("color", "description", *CODED_ATTRS, "label_value")
#: Largest serialised attribute object of one mask (bytes of compact UTF-8 JSON).
MAX_ATTRS_BYTES = 64 * 1024
#: Deepest nesting of containers inside an attribute object.
MAX_ATTRS_DEPTH = 8
#: Digits after the decimal point kept of a stored centroid (1/10,000 of a voxel).
CENTROID_DIGITS = 4


def _is_int(v: object) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_)


def _depth(obj: object) -> int:
    """Nesting depth of JSON containers (iterative: never recurses on hostile input)."""
    deepest = 0
    stack = [(obj, 1)]
    while stack:
        item, d = stack.pop()
        if isinstance(item, dict):
            items = item.values()
        elif isinstance(item, list | tuple):
            items = item
        else:
            continue
        deepest = max(deepest, d)
        if deepest > MAX_ATTRS_DEPTH:
            return deepest
        stack.extend((v, d + 1) for v in items)
    return deepest


def _json_object_problem(attrs: object) -> tuple[str | None, dict | None]:
    """``(problem, normalised copy)`` of a JSON object of attributes: an object with
    non-empty string keys, JSON values, at most :data:`MAX_ATTRS_DEPTH` deep and
    :data:`MAX_ATTRS_BYTES` long (the limits of per-mask and archive attributes)."""
    if not isinstance(attrs, Mapping):
        return f"attributes must be a JSON object (dict), got {type(attrs).__name__}", None
    if _depth(attrs) > MAX_ATTRS_DEPTH:
        return f"attributes are nested deeper than {MAX_ATTRS_DEPTH} levels", None
    for key in attrs:
        if not isinstance(key, str) or not key:
            return f"attribute names must be non-empty strings, got {key!r}", None
    try:
        raw = json.dumps(dict(attrs), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        return f"attributes must be JSON-serialisable ({exc})", None
    if len(raw.encode("utf-8")) > MAX_ATTRS_BYTES:
        return f"attributes take more than {MAX_ATTRS_BYTES} bytes as JSON", None
    return None, json.loads(raw)  # a private deep copy with tuples turned into lists


def _attrs_problem(attrs: object) -> tuple[str | None, dict | None]:
    """``(problem, normalised attrs)``: the first thing wrong with ``attrs`` or ``None``."""
    problem, norm = _json_object_problem(attrs)
    if problem is not None:
        return problem, None
    color = norm.get("color")
    if "color" in norm and not (
        isinstance(color, list)
        and len(color) == 3
        and all(_is_int(c) and 0 <= c <= 255 for c in color)
    ):
        return f"'color' must be [r, g, b] with integers 0-255, got {color!r}", None
    if "description" in norm and not isinstance(norm["description"], str):
        return f"'description' must be a string, got {norm['description']!r}", None
    for key in CODED_ATTRS:
        if key not in norm:
            continue
        code = norm[key]
        if not (
            isinstance(code, dict)
            and all(
                isinstance(code.get(k), str) and code[k] for k in ("scheme", "value", "meaning")
            )
            and all(isinstance(v, str) for v in code.values())
        ):
            return (
                f"{key!r} must be a coded concept {{'scheme': str, 'value': str, 'meaning': str}} "
                f"(DICOM CodingSchemeDesignator, CodeValue, CodeMeaning), got {code!r}",
                None,
            )
    lv = norm.get("label_value")
    if "label_value" in norm and not (_is_int(lv) and 0 <= lv < 2**32):
        return f"'label_value' must be an integer 0 <= v < 2**32, got {lv!r}", None
    return None, norm


def validate_attrs(attrs: Mapping[str, Any] | None, *, mask: str | None = None) -> dict:
    """Check a mask's attributes before they are written.

    Args:
        attrs: The attributes (see the module docstring for the documented keys), or
            ``None`` for none.
        mask: The mask's name, for the message.

    Returns:
        A normalised private copy (tuples become lists); ``{}`` for ``None``.

    Raises:
        MaskValidationError: What is wrong, naming the mask and the attribute.
    """
    if attrs is None:
        return {}
    problem, norm = _attrs_problem(attrs)
    if problem is not None:
        where = f"mask {mask!r}: " if mask is not None else ""
        raise MaskValidationError(where + problem)
    return norm


#: Reserved keys of an archive's attributes (format 2.3; ``docs/format.md``, "Archive
#: attributes") and what each holds; any other key is free and kept as it is.
ARCHIVE_KEYS = ("source", "grid", "annotated")
#: String-valued keys of ``archive_attrs["source"]`` (the DICOM attributes of the packed
#: source, and the file it came from); other keys of ``source`` are free.
SOURCE_KEYS = (
    "PatientID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "AlgorithmName",
    "AlgorithmVersion",
    "path",
)
#: Values of ``archive_attrs["grid"]``: the archive's grid is the source *image*'s grid, or
#: the *segmentation*'s own extent (e.g. a DICOM SEG's frames packed without its reference).
GRID_KINDS = ("image", "segmentation")


def _archive_problem(attrs: object) -> tuple[str | None, dict | None]:
    """``(problem, normalised attrs)`` of an archive's attributes (reserved keys checked)."""
    problem, norm = _json_object_problem(attrs)
    if problem is not None:
        return problem, None
    source = norm.get("source")
    if "source" in norm:
        if not isinstance(source, dict):
            return f"'source' must be an object, got {source!r}", None
        for key in SOURCE_KEYS:
            value = source.get(key, "")
            several = key == "SOPInstanceUID" and isinstance(value, list)  # a SEG series
            if not (isinstance(value, str) or several and all(isinstance(v, str) for v in value)):
                return f"'source.{key}' must be a string, got {source[key]!r}", None
    if "grid" in norm and norm["grid"] not in GRID_KINDS:
        return f"'grid' must be one of {list(GRID_KINDS)}, got {norm['grid']!r}", None
    if "annotated" in norm:
        names = norm["annotated"]
        if not (isinstance(names, list) and all(isinstance(n, str) and n for n in names)):
            return f"'annotated' must be a list of mask names, got {str(names)[:80]}", None
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            return f"'annotated' lists names more than once: {dup[:8]}", None
    return None, norm


def validate_archive_attrs(attrs: Mapping[str, Any] | None) -> dict:
    """Check an archive's attributes before they are written.

    The same limits as a mask's attributes (a JSON object of at most
    :data:`MAX_ATTRS_BYTES` bytes, :data:`MAX_ATTRS_DEPTH` levels), and the reserved keys of
    :data:`ARCHIVE_KEYS`: ``source`` an object (the :data:`SOURCE_KEYS` strings), ``grid``
    one of :data:`GRID_KINDS`, ``annotated`` a list of distinct names.

    Args:
        attrs: The attributes, or ``None`` for none.

    Returns:
        A normalised private copy; ``{}`` for ``None``.

    Raises:
        MaskValidationError: What is wrong.
    """
    if attrs is None:
        return {}
    problem, norm = _archive_problem(attrs)
    if problem is not None:
        raise MaskValidationError(f"archive attributes: {problem}")
    return norm


def parse_archive_attrs(obj: object, *, path: object, field: str) -> dict:
    """Validate an archive's stored attributes (:func:`validate_archive_attrs`' rules).

    Raises:
        CorruptFileError: The stored object breaks them (naming the file and field).
    """
    problem, norm = _archive_problem(obj)
    if problem is not None:
        raise CorruptFileError(f"invalid archive attributes: {problem}", path=path, field=field)
    return norm


def make_extra(centroid: tuple[float, float, float] | None, attrs: Mapping | None) -> dict:
    """The ``extra`` record of one mask (``attrs`` already validated)."""
    extra: dict = {}
    if centroid is not None:
        extra["centroid"] = [round(float(c), CENTROID_DIGITS) for c in centroid]
    if attrs:
        extra["attrs"] = dict(attrs)
    return extra


def parse_extra(
    obj: object,
    *,
    bbox: tuple[int, ...] | None,
    path: object,
    mask: str | None,
    field: str = "index.extra",
    centroid: bool = True,
) -> tuple[tuple[float, float, float] | None, dict]:
    """Validate a stored ``extra`` record.

    Args:
        obj: The stored value (an object, or ``None`` for none).
        bbox: The mask's stored bounding box (the centroid must lie inside it); ``None``
            for an empty mask (which has no centroid).
        path: The file, for messages.
        mask: The mask's name, for messages.
        field: The file field, for messages.
        centroid: Whether the record may hold the centroid (format 2.1 and ``.msk``); in
            format 2.2 the centroid has an index column of its own and a ``"centroid"``
            key here is an unknown key.

    Returns:
        ``(centroid or None, attrs)``; unknown keys of ``extra`` are ignored.

    Raises:
        CorruptFileError: The record has the wrong types, sizes or values.
    """
    if obj is None:
        return None, {}
    if not isinstance(obj, dict):
        raise CorruptFileError(
            f"extra must be a JSON object or null, found {type(obj).__name__}",
            path=path,
            mask=mask,
            field=field,
        )
    found = None
    raw_c = obj.get("centroid") if centroid else None
    if raw_c is not None:
        if not (
            isinstance(raw_c, list)
            and len(raw_c) == 3
            and all(
                isinstance(c, int | float) and not isinstance(c, bool) and math.isfinite(c)
                for c in raw_c
            )
        ):
            raise CorruptFileError(
                f"centroid {str(raw_c)[:80]} is not three finite numbers",
                path=path,
                mask=mask,
                field=field + ".centroid",
            )
        if bbox is None:
            raise CorruptFileError(
                "an empty mask cannot have a centroid", path=path, mask=mask, field=field
            )
        for axis, c in enumerate(raw_c):
            if not bbox[2 * axis] - 1e-3 <= c <= bbox[2 * axis + 1] - 1 + 1e-3:
                raise CorruptFileError(
                    f"centroid {raw_c} lies outside the bounding box {list(bbox)}",
                    path=path,
                    mask=mask,
                    field=field + ".centroid",
                )
        found = (float(raw_c[0]), float(raw_c[1]), float(raw_c[2]))
    attrs: dict = {}
    if obj.get("attrs") is not None:
        problem, norm = _attrs_problem(obj["attrs"])
        if problem is not None:
            raise CorruptFileError(
                f"invalid attributes: {problem}", path=path, mask=mask, field=field + ".attrs"
            )
        attrs = norm
    return found, attrs


def centroid_of(crop: np.ndarray, origin: tuple[int, int, int] = (0, 0, 0)) -> tuple:
    """``(voxels, centroid)`` of the non-zero voxels of a ``(z, y, x)`` array.

    Args:
        crop: The array (typically cropped to its bounding box).
        origin: Index of ``crop[0, 0, 0]`` in the full volume.

    Returns:
        ``(count, (z, y, x) mean index)``; ``(0, None)`` when nothing is set.
    """
    nz = crop if crop.dtype == np.bool_ else crop != 0
    zy = np.count_nonzero(nz, axis=2)  # one pass over the box
    pz = zy.sum(axis=1)
    total = int(pz.sum())
    if total == 0:
        return 0, None
    py = zy.sum(axis=0)
    px = np.count_nonzero(nz, axis=(0, 1))
    c = tuple(
        float(np.dot(p.astype(np.float64), np.arange(p.size, dtype=np.float64)) / total + o)
        for p, o in ((pz, origin[0]), (py, origin[1]), (px, origin[2]))
    )
    return total, c


# -- default colours ------------------------------------------------------------------------------
#: The fixed palette (RGB 0-255) of masks without a stored ``color``, in order of use: the
#: pictures (``medmask show``, notebooks) and the exports (Slicer, DICOM SEG, NIfTI label
#: tables) all take colours from it (:func:`palette_color`).
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (220, 190, 255),
    (170, 110, 40),
    (255, 250, 200),
    (128, 0, 0),
    (170, 255, 195),
    (128, 128, 0),
    (255, 215, 180),
    (0, 0, 128),
    (128, 128, 128),
    (255, 105, 180),
    (100, 149, 237),
    (154, 205, 50),
    (255, 160, 122),
    (72, 61, 139),
    (0, 206, 209),
    (199, 21, 133),
    (189, 183, 107),
    (95, 158, 160),
    (210, 105, 30),
)


def palette_color(k: int) -> tuple[int, int, int]:
    """The ``k``-th default colour (0-based): :data:`PALETTE`, then well-spread hues.

    No two ``k`` below 1024 share a colour, so that masks without a stored colour never
    look alike (beyond the fixed palette, golden-angle hues cycle through three
    saturation/brightness levels, skipping any colour already given).

    Args:
        k: The position in the order of use.

    Returns:
        ``(r, g, b)``, integers 0-255.
    """
    if k < len(PALETTE):
        return PALETTE[k]
    extended = _extended(1024 - len(PALETTE))
    return extended[(k - len(PALETTE)) % len(extended)]


@functools.cache
def _extended(n: int) -> tuple[tuple[int, int, int], ...]:
    """``n`` colours after :data:`PALETTE`, each new (computed once, when first needed)."""
    import colorsys

    seen, out, j = set(PALETTE), [], 0
    while len(out) < n:
        h = (j * 0.618033988749895) % 1.0
        s, v = ((0.65, 0.95), (0.9, 0.7), (0.45, 0.85))[j % 3]
        rgb = tuple(int(round(c * 255)) for c in colorsys.hsv_to_rgb(h, s, v))
        if rgb not in seen:
            seen.add(rgb)
            out.append(rgb)
        j += 1
    return tuple(out)
