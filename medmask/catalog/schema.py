"""The catalogue's schema: one Arrow/Parquet table, versioned, documented in
``docs/format.md`` ("Catalogue files").

A catalogue is :func:`medmask.stats`'s per-mask table written down, plus what a loader needs
to trust it later: each archive's fingerprint (size, commit generation, index CRC) and each
mask's position and blob byte range. Repeated strings (paths, cases, names, JSON objects)
are dictionary-encoded, so a catalogue of a million rows opens as pandas categoricals in a
fraction of a second.

The file's key-value metadata holds :data:`META_KEY`: a JSON object whose ``version`` is
:data:`SCHEMA_VERSION` (readers refuse a newer one with an upgrade message, and a Parquet
file without the key as "not a medmask catalogue").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._version import __version__
from ..errors import CorruptFileError, UnsupportedFormatError
from ..spaces import space_to_disk_json
from ..stats.rows import Part
from ..stats.table import concat_parts, derived_arrays

__all__ = [
    "SCHEMA_VERSION",
    "META_KEY",
    "COLUMNS",
    "NULLABLE_INTS",
    "BBOX_COLUMNS",
    "CENTROID_COLUMNS",
    "arrow_schema",
    "parts_table",
    "schema_metadata",
    "check_metadata",
]

#: The version of the catalogue schema this release writes and reads.
SCHEMA_VERSION = 1
#: The Parquet key-value metadata key that marks a medmask catalogue.
META_KEY = b"medmask.catalog"

#: ``(column, what it holds)`` in file order (``docs/format.md`` documents the types).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("path", "the archive's path (local: absolute) or URL"),
    ("case", "the case: the archive's stem (a .msk: its folder's name)"),
    ("format", "the file's layout: 2.3, 2.2, 2.1, 2.0, 1"),
    ("position", "the mask's position in its archive"),
    ("name", "the mask's name"),
    ("label", "its stored label (null when it holds several)"),
    ("labels", "its {name: label} mapping, JSON"),
    ("voxels", "non-zero voxels"),
    ("volume_ml", "voxels x voxel volume / 1000"),
    *(
        (f"bbox_{a}", "the half-open voxel box (z0, z1, y0, y1, x0, x1); null when empty")
        for a in ("z0", "z1", "y0", "y1", "x0", "x1")
    ),
    *(
        (f"centroid_{a}_mm", "the centre of mass in world RAS millimetres; null when empty")
        for a in ("r", "a", "s")
    ),
    ("touches_border", "the mask reaches a face of the grid"),
    ("empty", "no voxel is set"),
    ("attrs", "the mask's stored attributes, JSON; null when none"),
    ("source", "index (figures from the index) or decoded"),
    ("blob_offset", "byte offset of the mask's blob; null when it has none"),
    ("blob_length", "its length in bytes (0: no blob)"),
    ("blob_crc", "CRC-32 of the blob (format 2); null otherwise"),
    ("archive_size", "the archive's size in bytes when catalogued"),
    ("archive_generation", "its commit generation (format 2); null otherwise"),
    ("archive_index_crc", "CRC-32 of its index as stored; null for a .msk"),
    ("archive_attrs", "the archive's attributes (source identifiers, annotated), JSON"),
    ("archive_space", "its grid: the space JSON the file stores (x, y, z order)"),
)
#: The box and centroid columns (flat columns read fast; ``Catalog.df`` joins them).
BBOX_COLUMNS = tuple(f"bbox_{a}" for a in ("z0", "z1", "y0", "y1", "x0", "x1"))
CENTROID_COLUMNS = tuple(f"centroid_{a}_mm" for a in ("r", "a", "s"))
#: Integer columns that may be null (read as pandas ``Int64``).
NULLABLE_INTS = (
    "label",
    *BBOX_COLUMNS,
    "blob_offset",
    "blob_crc",
    "archive_generation",
    "archive_index_crc",
)
_DICT = (
    "path",
    "case",
    "format",
    "name",
    "labels",
    "attrs",
    "source",
    "archive_attrs",
    "archive_space",
)


def _pa() -> Any:
    try:
        import pyarrow
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("catalogues need pyarrow: pip install 'medmask[stats]'") from None
    return pyarrow


def arrow_schema() -> Any:
    """The Arrow schema of a catalogue (without its metadata)."""
    p = _pa()
    text = p.dictionary(p.int32(), p.string())
    types = {
        "position": p.int32(),
        "label": p.int64(),
        "voxels": p.int64(),
        "volume_ml": p.float64(),
        **dict.fromkeys(BBOX_COLUMNS, p.int32()),
        **dict.fromkeys(CENTROID_COLUMNS, p.float64()),
        "touches_border": p.bool_(),
        "empty": p.bool_(),
        "blob_offset": p.int64(),
        "blob_length": p.int64(),
        "blob_crc": p.int64(),
        "archive_size": p.int64(),
        "archive_generation": p.int64(),
        "archive_index_crc": p.int64(),
    }
    return p.schema([(c, text if c in _DICT else types[c]) for c, _ in COLUMNS])


def schema_metadata(**extra: Any) -> dict[bytes, bytes]:
    """The key-value metadata a catalogue is written with."""
    meta = {"version": SCHEMA_VERSION, "writer": f"medmask {__version__}", **extra}
    return {META_KEY: json.dumps(meta).encode()}


def check_metadata(metadata: dict | None, where: object) -> dict:
    """The catalogue metadata of a Parquet file, checked.

    Args:
        metadata: The file's key-value metadata (``None`` when it has none).
        where: The file, for messages.

    Returns:
        The parsed :data:`META_KEY` object.

    Raises:
        CorruptFileError: The file is no medmask catalogue (no :data:`META_KEY`).
        UnsupportedFormatError: Its schema version is newer than :data:`SCHEMA_VERSION`.
    """
    raw = (metadata or {}).get(META_KEY)
    if raw is None:
        raise CorruptFileError(
            "a Parquet file but not a medmask catalogue (no 'medmask.catalog' metadata); "
            "write one with 'medmask catalog PATHS -o FILE.parquet'",
            path=where,
        )
    try:
        meta = json.loads(raw)
        version = int(meta["version"])
    except (ValueError, KeyError, TypeError):
        raise CorruptFileError(
            f"invalid catalogue metadata {raw[:80]!r}", path=where, field="medmask.catalog"
        ) from None
    if version > SCHEMA_VERSION:
        raise UnsupportedFormatError(
            f"catalogue schema version {version} is newer than this medmask reads "
            f"({SCHEMA_VERSION}; medmask {__version__}): upgrade medmask "
            "(pip install -U medmask), or rebuild the catalogue with this release",
            path=where,
        )
    return meta


def _repeat(per_part: Sequence[str | None], counts: np.ndarray) -> Any:
    """A dictionary column holding ``per_part[k]`` on each row of part ``k`` (null rows
    for ``None``)."""
    p = _pa()
    values = list(dict.fromkeys(v for v in per_part if v is not None))
    code = {v: k for k, v in enumerate(values)}
    per = np.array([code.get(v, -1) for v in per_part], dtype=np.int32)
    idx = np.repeat(per, counts)
    indices = p.array(idx, mask=idx < 0) if (per < 0).any() else p.array(idx)
    return p.DictionaryArray.from_arrays(indices, p.array(values, type=p.string()))


def _json_column(values: Sequence[dict | None]) -> Any:
    """A dictionary column of JSON texts (null for ``None`` and ``{}``); each distinct
    object is encoded once (most rows repeat a few: ``{"liver": 1}``, no attributes)."""
    p = _pa()
    cache: dict[tuple, str] = {}
    text: list[str | None] = []
    for v in values:
        if not v:
            text.append(None)
            continue
        try:
            key = tuple(v.items())
            hit = cache.get(key)
        except TypeError:  # unhashable values (lists in attributes)
            key, hit = None, None
        if hit is None:
            hit = json.dumps(v, ensure_ascii=False, sort_keys=True)
            if key is not None:
                cache[key] = hit
        text.append(hit)
    return p.array(text, type=p.string()).dictionary_encode()


def _space_text(part: Part, cache: dict[int, str]) -> str | None:
    """The space JSON of a part, made once per distinct grid."""
    if part.space is None:
        return None
    key = id(part.grid)
    if key not in cache:
        cache[key] = space_to_disk_json(part.space).decode()
    return cache[key]


def parts_table(parts: Sequence[Part]) -> Any:
    """The catalogue rows of the files read (:func:`medmask.stats.rows.file_part`).

    Args:
        parts: The rows of each file.

    Returns:
        A :class:`pyarrow.Table` of :func:`arrow_schema`.
    """
    p = _pa()
    parts = [part for part in parts if part.names]
    spaces: dict[int, str] = {}  # each distinct grid's JSON once (grid_of shares grids)
    cols, grids = concat_parts(parts)
    d = derived_arrays(cols, grids)
    counts = np.array([len(part.names) for part in parts], dtype=np.int64)
    fps = np.array([part.fingerprint for part in parts], dtype=object).reshape(-1, 3)
    full = d.full
    labels = [next(iter(m.values())) if len(m) == 1 else None for m in cols["labels"]]
    empty = ~full
    data = {
        "path": _repeat([part.path for part in parts], counts),
        "case": _repeat([part.case for part in parts], counts),
        "format": _repeat([part.fmt for part in parts], counts),
        "position": p.array(cols["position"], type=p.int32()),
        "name": p.array(cols["name"], type=p.string()).dictionary_encode(),
        "label": p.array(labels, type=p.int64()),
        "labels": _json_column(cols["labels"]),
        "voxels": p.array(np.asarray(cols["voxels"], dtype=np.int64)),
        "volume_ml": p.array(d.volume_ml),
        **{
            c: p.array(d.box[:, k].astype(np.int32), mask=empty) for k, c in enumerate(BBOX_COLUMNS)
        },
        **{c: p.array(d.ras[:, k], mask=empty) for k, c in enumerate(CENTROID_COLUMNS)},
        "touches_border": p.array(d.touches),
        "empty": p.array(~full),
        "attrs": _json_column(cols["attrs"]),
        "source": p.array(cols["source"], type=p.string()).dictionary_encode(),
        "blob_offset": p.array(cols["offset"], type=p.int64()),
        "blob_length": p.array(cols["length"], type=p.int64()),
        "blob_crc": p.array(cols["crc"], type=p.int64()),
        "archive_size": p.array(np.repeat(fps[:, 0].astype(np.int64), counts)),
        "archive_generation": p.array(np.repeat(fps[:, 1], counts).tolist(), type=p.int64()),
        "archive_index_crc": p.array(np.repeat(fps[:, 2], counts).tolist(), type=p.int64()),
        "archive_attrs": _repeat(
            [
                json.dumps(part.archive_attrs, ensure_ascii=False, sort_keys=True)
                if part.archive_attrs
                else None
                for part in parts
            ],
            counts,
        ),
        "archive_space": _repeat([_space_text(part, spaces) for part in parts], counts),
    }
    return p.table(data, schema=arrow_schema())
