"""Version 2: the commit structure of an archive (preamble, commit slots and the chain of
index segments), read and written as plain values; :class:`~.archive.V2Archive` holds the
state."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import NamedTuple

import zstandard

from ...attrs import parse_archive_attrs
from ...codecs import decompress_bounded
from ...compression import INDEX_LEVEL
from ...errors import CorruptFileError, UnsupportedFormatError
from ..base import loads_json
from ..checks import is_uint
from .layout import (
    ARCHIVE_FIELDS,
    INDEX_LAYOUTS,
    INDEX_MAX_RATIO,
    INDEX_SMALL,
    MAX_INDEX_BYTES,
    PREAMBLE,
    SLOT,
    SLOT_OFFSETS,
)
from .rows import _bad

__all__ = [
    "check_preamble",
    "newest_slot",
    "segment_layout",
    "read_chain",
    "encode_segment",
    "encode_archive_segment",
    "SegmentRef",
    "Chain",
]

#: ``(offset, length, crc)`` of an index segment.
SegmentRef = tuple[int, int, int]
#: Longest index chain accepted (merging keeps real chains at about log2(masks)).
MAX_CHAIN = 64


def check_preamble(head: bytes, path: object) -> int:
    """Verify an archive's preamble (CRC, two 64-byte slots, no flags); return its minor."""
    if not PREAMBLE.crc_ok(head):
        raise _bad("preamble checksum mismatch", path, "header")
    pre = PREAMBLE.unpack_named(head)
    if (pre.slot_size, pre.slot_count, pre.flags) != (SLOT.size, 2, 0):
        raise _bad(
            f"unexpected slot layout {pre.slot_size}x{pre.slot_count}, flags {pre.flags}",
            path,
            "header",
        )
    return pre.minor


def newest_slot(head: bytes, path: object) -> tuple[int, NamedTuple]:
    """``(index, fields)`` of the valid commit slot with the highest generation.

    Raises:
        CorruptFileError: Neither slot is valid (both empty or damaged).
    """
    best: tuple[int, NamedTuple] | None = None
    problems = []
    for k, off in enumerate(SLOT_OFFSETS):
        slot = SLOT.unpack_named(head, off)
        if slot.generation == 0:
            problems.append(f"slot {k} empty")
        elif not SLOT.crc_ok(head, off):
            problems.append(f"slot {k} checksum mismatch")
        elif best is None or slot.generation > best[1].generation:
            best = (k, slot)
    if best is None:
        raise _bad("no valid commit slot (" + "; ".join(problems) + ")", path, "commit slot")
    return best


def segment_layout(fields: object, path: object) -> int:
    """The minor version whose index columns a segment's ``fields`` list names."""
    for minor, layout in INDEX_LAYOUTS.items():
        if fields == layout:
            return minor
    known = "; ".join(f"{layout} (format 2.{m})" for m, layout in INDEX_LAYOUTS.items())
    raise UnsupportedFormatError(
        f"index fields {str(fields)[:200]} are none of the known layouts ({known}); a newer "
        "medmask wrote this archive: upgrade medmask to open it",
        path=path,
        field="index",
    )


class Chain(NamedTuple):
    """What a commit's index chain holds (see :func:`read_chain`)."""

    #: ``(offset, length, crc, rows)`` of each row segment, oldest first.
    segments: list[tuple[int, int, int, int]]
    #: Every row, oldest first.
    rows: list
    #: The row layout (minor version) of each row's segment.
    minors: list[int]
    #: The archive's attributes (``{}`` without an archive-attributes segment).
    attrs: dict
    #: ``(offset, length, crc)`` of the archive-attributes segment, or ``None``.
    attrs_ref: SegmentRef | None


def read_chain(
    section: Callable[[int, int, int, str], bytes], ref: SegmentRef | None, path: object
) -> Chain:
    """Follow the index chain from the newest segment.

    The newest segment may be the archive-attributes segment of format 2.3
    (:data:`ARCHIVE_FIELDS`, one row ``[attrs]``); every other segment holds index rows.

    Args:
        section: ``section(offset, length, crc, field)`` reads a verified section.
        ref: The newest segment (``None``: no index).
        path: The file, for messages.

    Returns:
        A :class:`Chain`.

    Raises:
        CorruptFileError: A damaged segment or pointer, or a chain too long or too large.
        UnsupportedFormatError: A segment of an index layout this release does not know.
    """
    segments = []
    rows: list = []
    layouts: list[int] = []
    attrs: dict = {}
    attrs_ref = None
    budget = MAX_INDEX_BYTES  # decoded bytes left for the whole chain
    while ref is not None:
        off, length, crc = ref
        raw = section(off, length, crc, "index")
        seg, used = _segment(raw, budget, path)
        budget -= used
        if seg["fields"] == ARCHIVE_FIELDS:
            attrs = _archive_row(seg, first=not segments and attrs_ref is None, path=path)
            attrs_ref = ref
            ref = _previous(seg["prev"], off, path)
            continue
        layouts.append(segment_layout(seg["fields"], path))
        if not isinstance(seg["rows"], list) or not seg["rows"]:
            raise _bad("index segment has no rows", path, "index")
        segments.append((off, length, crc, len(seg["rows"])))
        rows.append(seg["rows"])
        ref = _previous(seg["prev"], off, path)
        if len(segments) > MAX_CHAIN:
            raise _bad("index chain is implausibly long", path, "index")
    segments.reverse()
    flat: list = []
    minors: list[int] = []
    for minor, seg_rows in zip(reversed(layouts), reversed(rows), strict=True):
        flat += seg_rows
        minors += [minor] * len(seg_rows)
    return Chain(segments, flat, minors, attrs, attrs_ref)


def _archive_row(seg: dict, *, first: bool, path: object) -> dict:
    """The attributes an archive-attributes segment holds (it must be the newest)."""
    if not first:
        raise _bad("an archive-attributes segment must be the newest of the chain", path, "index")
    if not (isinstance(seg["rows"], list) and len(seg["rows"]) == 1):
        raise _bad("the archive-attributes segment must hold one row", path, "archive_attrs")
    row = seg["rows"][0]
    if not (isinstance(row, list) and len(row) == 1):
        raise _bad("the archive-attributes row must be [attributes]", path, "archive_attrs")
    return parse_archive_attrs(row[0], path=path, field="archive_attrs")


def _segment(raw: bytes, budget: int, path: object) -> tuple[dict, int]:
    """One segment's object (keys ``prev``, ``fields``, ``rows``) and its decoded size."""
    limit = min(budget, max(INDEX_SMALL, len(raw) * INDEX_MAX_RATIO))
    try:
        decoded = decompress_bounded(raw, limit=limit, field="index")
    except CorruptFileError as err:
        raise err.add_context(path=path)  # noqa: B904 - the same exception
    seg = loads_json(decoded, path=path, field="index")
    if not (isinstance(seg, dict) and set(seg) == {"prev", "fields", "rows"}):
        raise _bad("index segment must be an object with prev, fields, rows", path, "index")
    return seg, len(decoded)


def _previous(prev: object, off: int, path: object) -> SegmentRef | None:
    """The previous segment a segment at ``off`` names (it must lie before it)."""
    if prev is None:
        return None
    if (
        isinstance(prev, list)
        and len(prev) == 3
        and all(is_uint(v) for v in prev)
        and prev[0] < off
    ):
        return tuple(prev)  # type: ignore[return-value]
    raise _bad(f"invalid previous-segment pointer {prev!r}", path, "index")


def _encode(prev: SegmentRef | None, fields: list[str], rows: list[list]) -> bytes:
    seg_json = json.dumps(
        {"prev": None if prev is None else list(prev), "fields": fields, "rows": rows},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")
    return zstandard.ZstdCompressor(level=INDEX_LEVEL, write_content_size=True).compress(seg_json)


def encode_segment(prev: SegmentRef | None, minor: int, rows: list[list]) -> bytes:
    """An index segment of the row layout of ``minor``: compact JSON, one zstd frame."""
    return _encode(prev, INDEX_LAYOUTS[minor], rows)


def encode_archive_segment(prev: SegmentRef | None, attrs: dict) -> bytes:
    """The archive-attributes segment (format 2.3) of validated ``attrs``."""
    return _encode(prev, ARCHIVE_FIELDS, [[attrs]])
