"""Where bytes come from and go to: local files and URLs (fsspec).

Every reader of ``.msk`` / ``.mska`` files reads through a :class:`ByteSource`
(:mod:`medmask.io.source`), so the same parsing code serves a local file (``os.pread``)
and an object in a bucket (byte-range requests through fsspec, :mod:`medmask.io.remote`).
:mod:`medmask.io.names` says what a path or URL is by its name.
"""

from __future__ import annotations

from . import remote  # registers the fsspec byte source for URLs
from .names import expect_name, format_from_name, is_url, split_suffix
from .source import ByteSource, LocalFileSource, register_source, source_schemes
from .target import Target, open_source

__all__ = [
    "ByteSource",
    "LocalFileSource",
    "open_source",
    "Target",
    "register_source",
    "source_schemes",
    "remote",
    "is_url",
    "format_from_name",
    "expect_name",
    "split_suffix",
]
