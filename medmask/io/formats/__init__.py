"""What kind of file is this? The one table of the file formats medmask knows.

Every format medmask reads, writes or recognises is a :class:`FileFormat` in one table: its
``kind`` (the table key), a ``title``, the ``suffixes`` its files are named with (the first
is the canonical one), ``sniff(head)`` (does this file start like one of mine?), its
:class:`Capabilities` (``pack``: read into an archive; ``unpack``: written from an archive;
label maps, overlaps, which attributes it keeps...), the options each direction accepts, and
``read`` / ``write``. Everything that asks "which format?" reads this table: content
recognition (:func:`identify`, :func:`identify_target`), the output-name rules of
:mod:`medmask.io.names`, ``medmask.conversions.to_archive`` / ``from_archive``, the command
line's help and checks, and the format table of ``docs/interop.md``.

This package is low in the stack (it imports nothing of medmask but :mod:`medmask.errors`),
so any layer can identify a file. The built-in entries here only *describe* their formats
and recognise their bytes; their ``read``/``write`` are supplied by
:mod:`medmask.conversions`, whose import registers subclasses of these entries that
implement them (``register_format(..., replace=True)``). A format of your own is a
:class:`FileFormat` subclass registered with :func:`register_format`; see
``tests/conversions/test_a_format_from_outside.py``.

Example:
    >>> from medmask.io.formats import identify, get_format
    >>> identify(b"MSKA" + bytes(60)).kind
    'mska'
    >>> get_format("seg.nrrd").suffixes
    ('.seg.nrrd',)
"""

from __future__ import annotations

from . import builtin
from .base import Capabilities, FileFormat
from .builtin import SEG_SOP_CLASSES, dicom_sop_class
from .table import (
    HEAD_BYTES,
    formats,
    get_format,
    identify,
    identify_target,
    kind_of_suffix,
    register_format,
    suffix_table,
    suffixes_longest_first,
    unregister_format,
)

__all__ = [
    "FileFormat",
    "Capabilities",
    "register_format",
    "unregister_format",
    "get_format",
    "formats",
    "suffix_table",
    "suffixes_longest_first",
    "kind_of_suffix",
    "identify",
    "identify_target",
    "dicom_sop_class",
    "HEAD_BYTES",
    "SEG_SOP_CLASSES",
]

for _cls in builtin.BUILTIN:
    register_format(_cls())
