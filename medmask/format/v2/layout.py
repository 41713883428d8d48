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
#: Column order of an index row of format 2.1 (medmask 0.3.0): 2.0's columns and the
#: per-mask ``extra`` object (which held the centroid as three decimal numbers).
INDEX_FIELDS_21 = [*INDEX_FIELDS_20, "extra"]
#: Column order of an index row of format 2.2: the centroid has a column of its own (three
#: integers in units of :data:`CENTROID_SCALE`), ``mapping`` may be a bare label number
#: (short for ``{name: label}``) and ``extra`` holds the attributes only. Integers and
#: one container less per row make the index smaller and faster to parse than 2.0's.
INDEX_FIELDS = [*INDEX_FIELDS_20, "centroid", "extra"]
#: The row layouts a reader knows, by the minor version that introduced them (2.3 rows
#: are 2.2 rows: :data:`ROWS_MINOR`).
INDEX_LAYOUTS = {0: INDEX_FIELDS_20, 1: INDEX_FIELDS_21, 2: INDEX_FIELDS}
#: ``fields`` of the archive-attributes segment of format 2.3: one row, ``[attrs object]``.
#: It is the newest segment of a commit that has archive attributes; a release that does
#: not know the list (medmask 0.4 and older) refuses the archive with "upgrade medmask".
ARCHIVE_FIELDS = ["archive_attrs"]
#: A 2.2 centroid column stores ``round(index * CENTROID_SCALE)`` for each axis.
CENTROID_SCALE = 10_000
#: Minor version written in new files (3: the rows of 2.2, plus an archive-attributes
#: segment when the archive has attributes). A file keeps its minor version when appended
#: to (its segments keep its columns, so the medmask release that wrote it still reads
#: it), except that setting archive attributes on a 2.2 file makes it 2.3.
MINOR = 3
#: The newest row layout (the rows of formats 2.2 and 2.3).
ROWS_MINOR = 2
#: The minor versions a writer can create.
MINORS = (0, 1, 2, 3)


def rows_minor(minor: int) -> int:
    """The row layout (a key of :data:`INDEX_LAYOUTS`) of format ``2.minor``."""
    return min(minor, ROWS_MINOR)


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
