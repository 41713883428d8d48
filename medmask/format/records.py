"""Declared fixed-size records: headers, preambles and commit slots.

A :class:`Record` is a little-endian :class:`struct.Struct` whose fields have names, in
the style of nibabel's header dtypes and zarr's metadata classes: the layout is written
once, as a list of ``(name, struct code)`` pairs, and the code packs and unpacks by
name only. A record may end with a CRC-32 trailer (field ``crc``) over all bytes before
it, which :meth:`Record.pack_named` computes and :meth:`Record.unpack_checked` verifies.
"""

from __future__ import annotations

import struct
from collections import namedtuple
from typing import Any, NamedTuple

from ..errors import CorruptFileError
from ._io import crc32

__all__ = ["Record"]

#: Name of the CRC-32 trailer field.
CRC = "crc"


class Record:
    """A named, fixed-size little-endian record, optionally sealed by a CRC-32 trailer.

    Args:
        name: What the record is (``"commit slot"``), for messages.
        fields: ``(field name, struct code)`` pairs in file order; a name of ``""``
            marks padding (codes such as ``"7x"``). A last field named ``"crc"``
            (code ``"I"``) is the CRC-32 of every byte before it.

    Attributes:
        name: As given.
        names: The named fields in order (padding left out).
        size: The record's size in bytes.
        format: Its :mod:`struct` format string (little-endian).
        Values: The named tuple type :meth:`unpack_named` returns.
    """

    __slots__ = ("_struct", "name", "names", "has_crc", "size", "format", "Values")

    def __init__(self, name: str, fields: list[tuple[str, str]]) -> None:
        self._struct = struct.Struct("<" + "".join(code for _n, code in fields))
        self.size = self._struct.size
        self.format = self._struct.format
        self.name = name
        self.names: tuple[str, ...] = tuple(n for n, _c in fields if n)
        self.has_crc = bool(self.names) and self.names[-1] == CRC
        self.Values: type[NamedTuple] = namedtuple(  # type: ignore[misc]
            name.title().replace(" ", "").replace("-", "") + "Fields", self.names
        )

    def pack_named(self, **values: Any) -> bytes:
        """Pack the named fields (every one but ``crc``, which is computed).

        Args:
            **values: One value per field name.

        Returns:
            The record's bytes.

        Raises:
            TypeError: A field is missing or unknown.
        """
        names = self.names[:-1] if self.has_crc else self.names
        if set(values) != set(names):
            missing = sorted(set(names) - set(values))
            extra = sorted(set(values) - set(names))
            raise TypeError(f"{self.name}: missing fields {missing}, unknown fields {extra}")
        ordered = [values[n] for n in names]
        if not self.has_crc:
            return self._struct.pack(*ordered)
        raw = self._struct.pack(*ordered, 0)
        return raw[:-4] + struct.pack("<I", crc32(raw[:-4]))

    def unpack_named(self, raw: bytes | memoryview, offset: int = 0) -> NamedTuple:
        """The record at ``offset`` of ``raw`` as a named tuple (the CRC is not checked)."""
        return self.Values._make(self._struct.unpack_from(raw, offset))

    def crc_ok(self, raw: bytes | memoryview, offset: int = 0) -> bool:
        """Whether the record at ``offset`` carries the CRC-32 of its other bytes."""
        if not self.has_crc:
            return True
        body = bytes(raw[offset : offset + self.size - 4])
        (stored,) = struct.unpack_from("<I", raw, offset + self.size - 4)
        return crc32(body) == stored

    def unpack_checked(
        self, raw: bytes | memoryview, offset: int = 0, *, path: object = None, field: str
    ) -> NamedTuple:
        """The record as a named tuple, its CRC trailer verified.

        Raises:
            CorruptFileError: The CRC-32 does not match (the record is damaged).
        """
        if not self.crc_ok(raw, offset):
            raise CorruptFileError(f"{self.name} checksum mismatch", path=path, field=field)
        return self.unpack_named(raw, offset)

    def __repr__(self) -> str:
        return f"Record({self.name!r}, {self.size} bytes, fields {list(self.names)})"
