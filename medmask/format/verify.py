"""Check a whole file and report every problem it has, not just the first.

:func:`verify_all` opens a ``.msk`` or ``.mska`` of either version, local or under a URL,
and runs the checks of :mod:`medmask.format.checks` the readers run, plus every
checksum and a full decode of every mask. A problem in the file's structure (magic,
header, commit slots, space, index chain) stops it, since nothing after it can be
located; a problem of one mask (its index row, mapping, checksum or blob) is recorded
and the next mask is checked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import MedMaskError
from ..io.target import Target, open_source
from .backend import ArchiveBackend
from .base import Entry
from .dispatch import open_archive, read_msk_record
from .sniff import sniff

__all__ = ["Problem", "verify_all"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file.

    Attributes:
        path: The file (as given).
        message: What is wrong, without the context fields.
        mask: The mask concerned, when the problem is inside one mask.
        field: The header field or section concerned, when known.
        error: The exception's class name (``"CorruptFileError"``, ``"FileNotFoundError"``...).
    """

    path: str
    message: str
    mask: str | None = None
    field: str | None = None
    error: str = "CorruptFileError"

    @classmethod
    def from_exception(cls, exc: BaseException, path: object) -> Problem:
        """The problem an exception describes (medmask errors keep their context)."""
        if isinstance(exc, MedMaskError):
            return cls(
                exc.path if exc.path is not None else str(path),
                exc.message,
                exc.mask,
                exc.field,
                type(exc).__name__,
            )
        if isinstance(exc, OSError) and exc.strerror:
            text = exc.strerror
        else:
            text = str(exc).strip() or type(exc).__name__
        return cls(str(path), text.splitlines()[0], error=type(exc).__name__)

    def __str__(self) -> str:
        parts = [self.path]
        if self.mask is not None:
            parts.append(f"mask {self.mask!r}")
        if self.field is not None:
            parts.append(f"field {self.field!r}")
        return ": ".join([*parts, self.message])


def verify_all(
    target: str | os.PathLike | Target, storage_options: Mapping[str, Any] | None = None
) -> list[Problem]:
    """Check every part of a medmask file and return all its problems.

    Args:
        target: A ``.msk`` or ``.mska`` file: a local path, a URL or a
            :class:`~medmask.io.target.Target`.
        storage_options: For a URL: options of its fsspec filesystem.

    Returns:
        The problems, in file order; ``[]`` when the file is sound (every checksum
        matches, every index row is valid, every mask's mapping parses and its blob
        decodes to its declared box). Never raises for a bad or missing file: that is a
        problem too.
    """
    problems: list[Problem] = []
    try:
        with open_source(target, storage_options=storage_options) as source:
            kind, _major = sniff(source)
            if kind == "msk":
                read_msk_record(source, cropped=True)
            else:
                _verify_archive(open_archive(source), problems)
    except Exception as exc:  # noqa: BLE001 - whatever stops the reader is a problem
        problems.append(Problem.from_exception(exc, target))
    return problems


def _verify_archive(backend: ArchiveBackend, problems: list[Problem]) -> None:
    """Check each mask of an opened archive on its own, recording what fails."""
    path = backend.path
    entries = backend.entries
    for i in range(len(entries)):
        try:
            entry = entries[i]  # the index row's checks
        except MedMaskError as exc:
            problems.append(Problem.from_exception(exc, path))
            continue
        for step in (lambda e=entry: e.mapping(path), lambda e=entry: _read(backend, e)):
            try:
                step()
            except MedMaskError as exc:
                exc.add_context(path=path, mask=entry.name)
                problems.append(Problem.from_exception(exc, path))


def _read(backend: ArchiveBackend, entry: Entry) -> None:
    """Read, checksum and decode one mask's stored region (nothing for an empty mask)."""
    if entry.bbox is not None:
        backend.read_box(entry)
