"""Version 2: cropped, checksummed, crash-safe ``.msk`` / ``.mska`` layouts.

``docs/format.md`` is the normative description; this package follows it, one module per
part: :mod:`.layout` (records and limits), :mod:`.rows` (index rows and blobs), :mod:`.msk`
(the single-mask file) and :mod:`.archive` (the archive backend).

``.msk`` (one mask, written once, atomically)::

    header (64 B) | meta JSON | blob

``.mska`` (many masks, append-only)::

    preamble (16 B) | commit slot A (64 B) | commit slot B (64 B) | blobs, space, index segments ...

A commit slot points at the space section, the newest index segment and the
logical end of the file. Appending writes the new blob(s) and a new index
segment after the current end, fsyncs, then overwrites the *older* slot with a
higher generation and fsyncs again. A reader takes the valid slot with the
highest generation, so a crash at any instant leaves the previous commit
intact. Index segments form a chain (each names its predecessor); merging
equal-sized segments like a binary counter keeps the chain O(log n) long while
each append writes O(log n) entries amortised.
"""

from .archive import V2Archive
from .entries import LazyEntries
from .layout import (
    ARCHIVE_FIELDS,
    CENTROID_SCALE,
    DATA_START,
    INDEX_FIELDS,
    INDEX_FIELDS_20,
    INDEX_FIELDS_21,
    INDEX_LAYOUTS,
    INDEX_MAX_RATIO,
    INDEX_SMALL,
    MAX_INDEX_BYTES,
    MINOR,
    MSK_HEADER,
    PREAMBLE,
    ROWS_MINOR,
    SLOT,
    SLOT_OFFSETS,
)
from .msk import decode_msk, encode_msk, read_msk
from .rows import encode_record, read_box

__all__ = [
    "ARCHIVE_FIELDS",
    "ROWS_MINOR",
    "MSK_HEADER",
    "PREAMBLE",
    "SLOT",
    "SLOT_OFFSETS",
    "DATA_START",
    "INDEX_FIELDS",
    "INDEX_FIELDS_20",
    "INDEX_FIELDS_21",
    "INDEX_LAYOUTS",
    "CENTROID_SCALE",
    "MINOR",
    "MAX_INDEX_BYTES",
    "INDEX_MAX_RATIO",
    "INDEX_SMALL",
    "encode_record",
    "encode_msk",
    "decode_msk",
    "read_msk",
    "read_box",
    "LazyEntries",
    "V2Archive",
]
