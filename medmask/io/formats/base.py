"""The declared interface of a file format: :class:`FileFormat` and its :class:`Capabilities`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ...errors import MaskValidationError

__all__ = ["FileFormat", "Capabilities"]


@dataclass(frozen=True)
class Capabilities:
    """What a format can do with medmask.

    Attributes:
        pack: Read into an archive (``medmask pack``, ``to_archive``).
        unpack: Written from one archive (``medmask unpack -o X``, ``from_archive``).
        tree: Written from a folder of archives (``medmask unpack-tree``).
        label_map: Holds one label map (a pack source may then become a ``.msk``).
        overlaps: Keeps masks that overlap (a label map does not).
        attributes: The mask attributes it keeps besides the name (``color``, coded
            ``category``/``type``..., ``label_value``).
    """

    pack: bool = False
    unpack: bool = False
    tree: bool = False
    label_map: bool = False
    overlaps: bool = False
    attributes: tuple[str, ...] = ()


class FileFormat:
    """The declared interface of a file format (subclass it; register an instance).

    Class attributes declare the format; methods recognise and convert it. A subclass
    overrides what applies: ``sniff`` for files recognised by content (``sniff_folder``
    for formats that are folders), ``read`` when it can be packed, ``write`` when it can
    be unpacked.

    Attributes:
        kind: The table key (``"nifti"``, ``"seg.nrrd"``...): what ``detect`` returns and
            reports show.
        title: A short human name (``"3D Slicer segmentation"``).
        suffixes: File name endings, lower case, the canonical one first (``(".nii.gz",
            ".nii")``); empty for formats known by content or layout only.
        extra: The ``pip install "medmask[EXTRA]"`` extra its conversions need, if any.
        folder: Instances are folders (recognised by ``sniff_folder``), not files.
        fallback: A generic container (plain NRRD, any DICOM, gzip, zip, any folder):
            tried after every specific format, in the table's order.
        gzipped: Files may be gzip-compressed whole (``.nii.gz``): ``sniff`` then also
            sees the inflated first bytes.
        capabilities: See :class:`Capabilities`.
        pack_options: Keyword options ``read`` accepts besides ``codec`` and ``progress``.
        unpack_options: Keyword options ``write`` accepts besides ``progress``.
        unpack_requires: Options ``write`` cannot do without (DICOM SEG: ``source``).
        output_name: How an unpack output of this format is named (``"X.seg.nrrd"``).
        pack_help: One line for ``medmask pack --help``: what is read from such a source.
        unpack_help: One line for ``medmask unpack --help``: what is written.
        hint: What to do with such a file when medmask cannot convert it.
    """

    kind: ClassVar[str] = ""
    title: ClassVar[str] = ""
    suffixes: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str | None] = None
    folder: ClassVar[bool] = False
    fallback: ClassVar[bool] = False
    gzipped: ClassVar[bool] = False
    capabilities: ClassVar[Capabilities] = Capabilities()
    pack_options: ClassVar[frozenset[str]] = frozenset()
    unpack_options: ClassVar[frozenset[str]] = frozenset()
    unpack_requires: ClassVar[frozenset[str]] = frozenset()
    output_name: ClassVar[str] = ""
    pack_help: ClassVar[str] = ""
    unpack_help: ClassVar[str] = ""
    hint: ClassVar[str] = ""

    def sniff(self, head: bytes) -> bool:
        """Whether a file starting with ``head`` is of this format.

        Args:
            head: The first bytes of the file (up to :data:`HEAD_BYTES`; for a
                ``gzipped`` format also the first inflated bytes of a gzip file).

        Returns:
            ``True`` when the bytes say so. The default recognises nothing (a format known
            by its name only).
        """
        return False

    def sniff_folder(self, path: Path) -> bool:
        """Whether a local folder is of this (``folder``) format; the default says no."""
        return False

    def read(self, src: Any, out: Any, **options: Any) -> Any:
        """Pack a source of this format into an archive.

        Args:
            src: The source, a :class:`medmask.io.Target` (a local path or a URL).
            out: The ``.mska`` (or, for ``label_map`` formats, ``.msk``) to write, a Target.
            **options: ``codec``, ``progress`` and the :attr:`pack_options` given.

        Returns:
            A ``medmask.conversions.ConversionReport``.

        Raises:
            MaskValidationError: Always, here: this format cannot be packed (the message
                says what to do instead).
        """
        raise self.refusal(src, "pack")

    def write(self, archive: Any, out: Any, **options: Any) -> Any:
        """Unpack an archive into this format.

        Args:
            archive: The ``.mska`` / ``.msk`` (a :class:`medmask.io.Target`); for ``tree``
                formats a folder of archives.
            out: The output, a Target named as :attr:`output_name` says.
            **options: ``progress`` and the :attr:`unpack_options` given.

        Returns:
            A ``medmask.conversions.ConversionReport``.

        Raises:
            MaskValidationError: Always, here: this format cannot be written.
        """
        raise self.refusal(out, "unpack")

    def refusal(self, path: object, direction: str) -> MaskValidationError:
        """The error for a ``direction`` (``"pack"``/``"unpack"``) this format lacks.

        Args:
            path: The file concerned.
            direction: ``"pack"`` or ``"unpack"``.

        Returns:
            A :class:`~medmask.errors.MaskValidationError` naming the format, and what to
            do (:attr:`hint`); when the table declares the capability but the converter
            is not loaded, it says to import :mod:`medmask.conversions`.
        """
        can = self.capabilities.pack if direction == "pack" else self.capabilities.unpack
        if can:
            return MaskValidationError(
                f"converting {self.title} files needs medmask.conversions: import it first",
                path=path,
            )
        verb = "read" if direction == "pack" else "write"
        text = (
            f"{self.title[:1].upper()}{self.title[1:]}: 'medmask {direction}' does not {verb} these"
        )
        return MaskValidationError(text + (f"; {self.hint}" if self.hint else ""), path=path)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.kind!r}>"
