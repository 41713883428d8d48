"""Version 2: the declared records and limits of the layout (``docs/format.md``)."""

from __future__ import annotations

from ..records import Record

#: ``.msk`` v2 header (64 bytes; the CRC covers bytes 0-59).
MSK_HEADER = Record(
    "header",
    [
        ("magic", "4s"),
        ("major", "B"),
        ("minor", "B"),
        ("flags", "H"),
        ("header_length", "I"),
        ("meta_offset", "Q"),
        ("meta_length", "Q"),
        ("meta_crc", "I"),
        ("blob_crc", "I"),
        ("blob_offset", "Q"),
        ("blob_length", "Q"),
        ("", "8x"),
        ("crc", "I"),
    ],
)
#: ``.mska`` v2 preamble (16 bytes; the CRC covers bytes 0-11).
PREAMBLE = Record(
    "preamble",
    [
        ("magic", "4s"),
        ("major", "B"),
        ("minor", "B"),
        ("flags", "H"),
        ("slot_size", "H"),
        ("slot_count", "H"),
        ("crc", "I"),
    ],
)
#: Commit slot (64 bytes; the CRC covers bytes 0-59).
SLOT = Record(
    "commit slot",
    [
        ("generation", "Q"),
        ("mask_count", "Q"),
        ("space_offset", "Q"),
        ("space_length", "I"),
        ("space_crc", "I"),
        ("index_offset", "Q"),
        ("index_length", "I"),
        ("index_crc", "I"),
        ("end_offset", "Q"),
        ("reserved", "I"),
        ("crc", "I"),
    ],
)
SLOT_OFFSETS = (PREAMBLE.size, PREAMBLE.size + SLOT.size)
DATA_START = PREAMBLE.size + 2 * SLOT.size
#: Column order of an index row of format 2.0 (medmask 0.2.0).
INDEX_FIELDS_20 = [
    "name",
    "codec",
    "offset",
    "length",
    "crc32",
    "dtype",
    "bbox",
    "voxels",
    "mapping",
]
#: Column order of an index row of format 2.1: 2.0's columns and the per-mask ``extra``.
INDEX_FIELDS = [*INDEX_FIELDS_20, "extra"]
#: Minor version written in new files (1: per-mask extras). Files of minor 0 stay minor 0
#: when appended to (their index keeps 2.0's columns, so medmask 0.2.0 still reads them).
MINOR = 1
#: Largest decoded index segment or meta section accepted (bytes).
MAX_INDEX_BYTES = 1 << 30
#: An index segment may not decode to more than this many times its stored size (beyond
#: :data:`INDEX_SMALL` bytes), and all segments of a commit together to more than
#: :data:`MAX_INDEX_BYTES`, so that opening an archive takes memory and time in proportion
#: to its index. Real segments compress 30-90x (100,000 rows of empty masks with
#: sequential names: 86x); a hostile segment of JSON whitespace compresses ~30,000x.
INDEX_MAX_RATIO = 1000
INDEX_SMALL = 1 << 20

assert MSK_HEADER.size == 64 and PREAMBLE.size == 16 and SLOT.size == 64
