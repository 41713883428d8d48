"""On-disk layouts of ``.msk`` and ``.mska`` files, and the tables that choose among them.

This layer works on plain records (array, :class:`~medmask.mapping.LabelMapping`,
:class:`~spacetransformer.Space`) and never imports :class:`~medmask.SegmentationMask`,
so that the object model can depend on it without an import cycle.

Two tables make it extensible without editing it:

* :mod:`.layouts`: the compatibility table, one :class:`Layout` per format
  ``major.minor`` with what it can hold (``supports_attrs``, ``centroids``,
  ``index_stats``, ``cropped_blobs``, ``checksums``, ``in_place_edits``) and the
  ``compat`` release that writes it. Code above this package asks a layout for a
  capability; it never compares version numbers.
* :mod:`.versions`: one :class:`FormatVersion` per major version, naming its archive
  backend (an :class:`~medmask.format.backend.ArchiveBackend`), its ``.msk`` reader and
  writer and the codecs it stores.

:mod:`.sniff` tells a file by its first bytes (:func:`read_signature`, the one sniff);
:mod:`.dispatch` opens, reads and writes through the tables; each version lives in its
own module (:mod:`.v1`, :mod:`.v2`); :mod:`.verify` checks a whole file.
"""

from __future__ import annotations

from typing import Any

from ..bbox import BBox, bbox_slices
from .backend import ArchiveBackend
from .base import Entry, MskRecord
from .dispatch import archive_backend, open_archive, read_msk, read_msk_record, write_msk
from .layouts import LAYOUTS, Layout, compat_choices, register_layout
from .sniff import Signature, read_signature, sniff, sniff_target
from .verify import Problem, verify_all
from .versions import FormatVersion, codec_version, register_version, supported_versions

__all__ = [
    "LAYOUTS",
    "Layout",
    "compat_choices",
    "register_layout",
    "FormatVersion",
    "register_version",
    "supported_versions",
    "Signature",
    "read_signature",
    "sniff",
    "sniff_target",
    "read_msk",
    "read_msk_record",
    "MskRecord",
    "write_msk",
    "open_archive",
    "archive_backend",
    "ArchiveBackend",
    "Entry",
    "BBox",
    "bbox_slices",
    "codec_version",
    "verify_all",
    "Problem",
]


def __getattr__(name: str) -> Any:
    if name == "SUPPORTED_VERSIONS":  # the table as it is now (versions may be registered)
        return supported_versions()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
