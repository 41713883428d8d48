"""The table of format versions: which code reads and writes each major version.

A :class:`FormatVersion` names the implementation of one major version: its archive
backend (an :class:`~medmask.format.backend.ArchiveBackend`), its ``.msk`` reader and
writer, and the codecs it can store. :func:`medmask.format.sniff` reads the major version
a file declares and the dispatch functions (:func:`~medmask.format.open_archive`,
:func:`~medmask.format.read_msk_record`, :func:`~medmask.format.write_msk`) look it up
here; what each layout can hold is the other table, :mod:`medmask.format.layouts`.

A new version is one :func:`register_version` call plus one
:func:`~medmask.format.layouts.register_layout` per layout it has
(``tests/format/test_extension_points.py`` registers a toy version 3 from outside).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..codecs import Codec, get_codec
from ..errors import MaskValidationError, UnsupportedFormatError
from . import v1, v2
from .backend import ArchiveBackend
from .layouts import LAYOUTS

__all__ = [
    "FormatVersion",
    "register_version",
    "version_of",
    "supported_versions",
    "codec_version",
    "backend_for",
    "check_codec_for",
    "write_choice",
]


@dataclass(frozen=True)
class FormatVersion:
    """The code of one format major version.

    Attributes:
        major: The major version (the byte after the magic).
        archive: The ``.mska`` backend class.
        msk_header_size: Bytes of the ``.msk`` header handed to :attr:`read_msk` (0: this
            version has no ``.msk`` layout).
        read_msk: ``read_msk(source, header, *, cropped) -> MskRecord``.
        encode_msk: ``encode_msk(array, mapping, space, codec, attrs, *, path) -> bytes``.
        codec_ids: The codec ids the version can store, or ``None`` for any registered
            codec (the index names each blob's codec). A codec listed here is written in
            this version (:func:`codec_version`).
    """

    major: int
    archive: type[ArchiveBackend]
    msk_header_size: int = 0
    read_msk: Callable | None = None
    encode_msk: Callable | None = None
    codec_ids: frozenset[int] | None = None


_VERSIONS: dict[int, FormatVersion] = {}


def register_version(version: FormatVersion, *, replace: bool = False) -> None:
    """Add a format major version to the table (its layouts go to
    :func:`~medmask.format.layouts.register_layout`).

    Raises:
        ValueError: The major version is already registered (and not ``replace``).
    """
    if version.major in _VERSIONS and not replace:
        raise ValueError(f"format version {version.major} is already registered")
    _VERSIONS[version.major] = version


def supported_versions() -> tuple[int, ...]:
    """The major versions this release reads, ascending."""
    return tuple(sorted(_VERSIONS))


def version_of(major: int, *, minor: int | None = None, path: object = None) -> FormatVersion:
    """The implementation of a major version.

    Args:
        major: The major version.
        minor: The minor version the file declares, for messages.
        path: The file, for messages.

    Raises:
        UnsupportedFormatError: No such version is registered.
    """
    found = _VERSIONS.get(major)
    if found is None:
        raise UnsupportedFormatError(
            f"format version {major}{'' if minor is None else f'.{minor}'} is not supported; "
            f"this release reads versions "
            f"{', '.join(map(str, supported_versions()))} (upgrade medmask to open it)",
            path=path,
            field="version",
        )
    return found


def codec_version(codec: Codec) -> int:
    """The format major version a codec's blobs are written in.

    A version that lists the codec's id in :attr:`FormatVersion.codec_ids` holds it (the
    ``"zstd"`` codec: version 1); every other codec goes to the current layout's version,
    whose index names each mask's codec.
    """
    for major in supported_versions():
        ids = _VERSIONS[major].codec_ids
        if ids is not None and codec.codec_id in ids:
            return major
    return LAYOUTS.current.major


def backend_for(codec: Codec) -> type[ArchiveBackend]:
    """The archive backend new archives written with ``codec`` use."""
    return version_of(codec_version(codec)).archive


def check_codec_for(codec: Codec | None, major: int, *, path: object) -> None:
    """Refuse to append with a codec of another version than the file's.

    Raises:
        MaskValidationError: ``codec`` writes another major version than ``major``.
    """
    if codec is not None and codec_version(codec) != major:
        raise MaskValidationError(
            f"{path} is a version-{major} archive; codec {codec.name!r} writes "
            f"version {codec_version(codec)} (use 'medmask convert' to change versions)"
        )


def write_choice(
    codec: str | Codec | None, compat: str | None
) -> tuple[str | Codec | None, int | None]:
    """The codec and minor version new files are written with, for ``compat``.

    ``compat`` names a row of the compatibility table; a row of another version than the
    default codec's forces its codec (``compat="0.1"``: ``"zstd"``), and a codec that would
    write a newer version than the row is refused.

    Returns:
        ``(codec, minor)``; ``minor`` ``None`` writes the newest layout of the version.

    Raises:
        MaskValidationError: An unknown ``compat``, or a codec it contradicts.
    """
    if compat is None:
        return codec, None
    layout = LAYOUTS.for_compat(compat)
    if codec is not None:
        major = codec_version(get_codec(codec))
        if major > layout.major:
            raise MaskValidationError(
                f"compat={compat!r} writes version {layout.major}: leave codec= out"
            )
        return codec, layout.minor if major == layout.major else None
    if codec_version(get_codec(None)) != layout.major:
        return layout.codec, layout.minor
    return None, layout.minor


register_version(
    FormatVersion(1, v1.V1Archive, v1.MSK_HEADER.size, v1.read_msk, v1.encode_msk, v1.CODEC_IDS)
)
register_version(FormatVersion(2, v2.V2Archive, v2.MSK_HEADER.size, v2.read_msk, v2.encode_msk))
