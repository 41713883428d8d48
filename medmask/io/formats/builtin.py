"""The built-in entries of the format table: what each format is and how its bytes are
recognised. :mod:`medmask.conversions` subclasses them to implement ``read`` and ``write``."""

from __future__ import annotations

import struct
from pathlib import Path

from .base import Capabilities, FileFormat

__all__ = ["BUILTIN", "SEG_SOP_CLASSES", "dicom_sop_class"]

_GZIP_MAGIC = b"\x1f\x8b"

#: SOP Class UIDs of DICOM Segmentation objects: Segmentation Storage (BINARY and
#: FRACTIONAL) and Label Map Segmentation Storage.
SEG_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7")


# -- sniffers of the built-in formats -----------------------------------------------------------
def _nifti_header(head: bytes) -> bool:
    """A NIfTI-1 (``sizeof_hdr`` 348, magic ``n+1``/``ni1``) or NIfTI-2 (540, ``n+2``/``ni2``)
    header, in either byte order."""
    if len(head) < 348:
        return False
    for order in ("little", "big"):
        size = int.from_bytes(head[:4], order)
        if size == 348 and head[344:347] in (b"n+1", b"ni1"):
            return True
        if size == 540 and head[4:7] in (b"n+2", b"ni2"):
            return True
    return False


def _nrrd_header(head: bytes) -> bytes | None:
    """The header text of an NRRD file (``NRRD000x`` magic), or ``None``."""
    return head.split(b"\n\n", 1)[0] if head[:7] == b"NRRD000" else None


#: Value representations whose explicit-VR length field has 4 bytes (after 2 reserved ones).
_LONG_VRS = frozenset(
    (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV")
)


def dicom_sop_class(head: bytes) -> str | None:
    """The Media Storage SOP Class UID in a DICOM file's meta information (group 0002,
    explicit VR little endian, after the 128-byte preamble and ``DICM``), or ``None``.

    Only the file meta is read: no pixel data, no dataset parsing.
    """
    if len(head) < 132 or head[128:132] != b"DICM":
        return None
    pos = 132
    while pos + 8 <= len(head):
        group, element = struct.unpack_from("<HH", head, pos)
        if group != 0x0002:
            return None
        vr = head[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            if pos + 12 > len(head):
                return None
            (length,) = struct.unpack_from("<I", head, pos + 8)
            start = pos + 12
        else:
            (length,) = struct.unpack_from("<H", head, pos + 6)
            start = pos + 8
        if length == 0xFFFFFFFF or start + length > len(head):
            return None
        if element == 0x0002:
            return head[start : start + length].rstrip(b"\x00 ").decode("ascii", "replace")
        pos = start + length
    return None


# -- the built-in entries (descriptions; medmask.conversions implements read and write) ---------
class MedmaskArchive(FileFormat):
    """A medmask archive (magic ``MSKA``)."""

    kind = "mska"
    title = "medmask archive"
    suffixes = (".mska",)
    capabilities = Capabilities(overlaps=True, attributes=("all",))
    hint = "'medmask convert' copies or rewrites it (another format version, compacted)"

    def sniff(self, head: bytes) -> bool:  # noqa: D102 - see FileFormat.sniff
        return head[:4] == b"MSKA"


class MedmaskMask(FileFormat):
    """A medmask single-mask file (magic ``MSK`` + version)."""

    kind = "msk"
    title = "medmask mask file"
    suffixes = (".msk",)
    capabilities = Capabilities(label_map=True, attributes=("all",))
    hint = "'medmask convert' rewrites it, or makes it a one-mask archive"

    def sniff(self, head: bytes) -> bool:  # noqa: D102
        return head[:3] == b"MSK" and head[:4] != b"MSKA"


class NiftiFolder(FileFormat):
    """A folder of binary NIfTI masks, or a case folder holding one."""

    kind = "folder"
    title = "folder of NIfTI masks, or a case folder"
    extra = "nifti"
    folder = True
    fallback = True
    capabilities = Capabilities(pack=True, unpack=True, overlaps=True)
    pack_options = frozenset({"resample", "allow_float", "binarize"})
    unpack_options = frozenset({"names", "force"})
    output_name = "DIR/"
    pack_help = (
        "a folder of binary NIfTI masks (names from file names), or a case folder "
        "(CASE/segmentations/ beside CASE/ct.nii.gz: the image is not packed)"
    )
    unpack_help = "one <name>.nii.gz per mask (names made safe: nothing escapes DIR)"

    def sniff_folder(self, path: Path) -> bool:  # noqa: D102 - any folder may hold masks
        return True


class Nifti(FileFormat):
    """A NIfTI-1/2 image: one binary mask or a label map."""

    kind = "nifti"
    title = "NIfTI image: a mask or a label map"
    suffixes = (".nii.gz", ".nii")
    extra = "nifti"
    gzipped = True
    capabilities = Capabilities(
        pack=True, unpack=True, label_map=True, attributes=("color", "label_value")
    )
    pack_options = frozenset({"labels", "drop_unlisted", "allow_float", "binarize"})
    unpack_options = frozenset({"labels", "overlap"})
    output_name = "X.nii.gz"
    pack_help = (
        "a NIfTI label map (names from --labels TABLE or TotalSegmentator's header extension; "
        "OUT.msk keeps it as one label map), or a single binary NIfTI mask"
    )
    unpack_help = "one label map with TotalSegmentator's names extension, plus X.json (its table)"

    def sniff(self, head: bytes) -> bool:  # noqa: D102
        return _nifti_header(head)


_CODED = ("category", "type", "type_modifier", "region", "region_modifier")


class SlicerSegmentation(FileFormat):
    """A 3D Slicer segmentation: an NRRD whose header has ``Segment0_*`` fields."""

    kind = "seg.nrrd"
    title = "3D Slicer segmentation"
    suffixes = (".seg.nrrd",)
    extra = "nrrd"
    capabilities = Capabilities(
        pack=True, unpack=True, overlaps=True, attributes=("color", *_CODED, "label_value")
    )
    unpack_options = frozenset({"names"})
    output_name = "X.seg.nrrd"
    pack_help = "a 3D Slicer .seg.nrrd (one mask per segment; layers and empty segments kept)"
    unpack_help = "a 3D Slicer segmentation (overlapping masks in layers)"

    def sniff(self, head: bytes) -> bool:  # noqa: D102
        text = _nrrd_header(head)
        return text is not None and (b"Segment0_" in text or b"Segmentation_" in text)


class DicomSeg(FileFormat):
    """A DICOM Segmentation object (SEG): told from other DICOM by the SOP Class UID of its
    file meta information."""

    kind = "dicom-seg"
    title = "DICOM SEG"
    suffixes = (".dcm", ".dicom")
    extra = "dicom"
    capabilities = Capabilities(
        pack=True,
        unpack=True,
        overlaps=True,
        attributes=("color", *_CODED, "description", "label_value", "algorithm_type"),
    )
    pack_options = frozenset({"threshold", "reference"})
    unpack_options = frozenset({"source", "labelmap_seg", "names", "overlap"})
    unpack_requires = frozenset({"source"})
    output_name = "X.dcm"
    pack_help = "a DICOM SEG (BINARY, FRACTIONAL with only 0/max, LABELMAP; one mask per segment)"
    unpack_help = "a DICOM SEG on the series in --source DICOM_DIR (grid must match)"

    def sniff(self, head: bytes) -> bool:  # noqa: D102
        return dicom_sop_class(head) in SEG_SOP_CLASSES


class NnunetDataset(FileFormat):
    """nnU-Net's raw dataset layout: ``labelsTr/<case>.nii.gz`` and ``dataset.json``."""

    kind = "nnunet"
    title = "nnU-Net raw dataset: labelsTr/ and dataset.json"
    extra = "nifti"
    folder = True
    capabilities = Capabilities(tree=True, label_map=True, attributes=())
    unpack_options = frozenset({"labels", "overlap", "missing_empty"})
    output_name = "DIR/"
    unpack_help = "DIR/labelsTr/<case>.nii.gz (a label map per archive) and DIR/dataset.json"
    hint = (
        "pack each label map with 'medmask pack DIR/labelsTr/CASE.nii.gz --labels DIR/dataset.json'"
    )

    def sniff_folder(self, path: Path) -> bool:  # noqa: D102
        return (path / "dataset.json").is_file() and (path / "labelsTr").is_dir()


class Nrrd(FileFormat):
    """Any NRRD file (one without Slicer's segment fields is an image)."""

    kind = "nrrd"
    title = "NRRD image without Slicer segment fields"
    suffixes = (".nrrd", ".nhdr")
    fallback = True
    gzipped = True
    hint = "save it from 3D Slicer as a segmentation (.seg.nrrd), or convert it to NIfTI"

    def sniff(self, head: bytes) -> bool:  # noqa: D102
        return _nrrd_header(head) is not None


class Dicom(FileFormat):
    """Any DICOM file (``DICM`` after the 128-byte preamble); a SEG is :class:`DicomSeg`."""

    kind = "dicom"
    title = "DICOM image, not a SEG"
    suffixes = (".dcm", ".dicom")
    fallback = True
    hint = "pack the SEG file, and give the image series to --reference"

    def sniff(self, head: bytes) -> bool:  # noqa: D102
        return len(head) >= 132 and head[128:132] == b"DICM"


class Gzip(FileFormat):
    """A gzip stream that holds none of the formats above."""

    kind = "gzip"
    title = "gzip file holding no NIfTI image"
    suffixes = (".gz",)
    fallback = True
    hint = "decompress it and pack what it holds"

    def sniff(self, head: bytes) -> bool:  # noqa: D102
        return head[:2] == _GZIP_MAGIC


class Zip(FileFormat):
    """A zip archive (``PK`` local file header or an empty archive's end record)."""

    kind = "zip"
    title = "zip archive"
    suffixes = (".zip",)
    fallback = True
    hint = "unzip it and pack what it holds"

    def sniff(self, head: bytes) -> bool:  # noqa: D102
        return head[:4] in (b"PK\x03\x04", b"PK\x05\x06")


class _Output(FileFormat):
    """A format medmask writes reports or pictures in (never converted)."""

    fallback = True
    hint = "medmask writes these (stats, ls --json, show) but converts no masks from them"


class Json(_Output):
    """JSON (``medmask stats``, ``--json`` reports, label tables)."""

    kind = "json"
    title = "JSON"
    suffixes = (".json",)


class Csv(_Output):
    """CSV (``medmask stats --csv``)."""

    kind = "csv"
    title = "CSV table"
    suffixes = (".csv",)


class Parquet(_Output):
    """Parquet (``medmask stats --parquet``)."""

    kind = "parquet"
    title = "Parquet table"
    suffixes = (".parquet",)

    def sniff(self, head: bytes) -> bool:  # noqa: D102
        return head[:4] == b"PAR1"


class Png(_Output):
    """PNG (``medmask show``)."""

    kind = "png"
    title = "PNG picture"
    suffixes = (".png",)

    def sniff(self, head: bytes) -> bool:  # noqa: D102
        return head[:8] == b"\x89PNG\r\n\x1a\n"


#: The built-in entries in table order (specific formats first; ``fallback`` ones are
#: looked up after every specific one anyway).
BUILTIN: tuple[type[FileFormat], ...] = (
    MedmaskArchive,
    MedmaskMask,
    Nifti,
    SlicerSegmentation,
    DicomSeg,
    NnunetDataset,
    NiftiFolder,
    Nrrd,
    Dicom,
    Gzip,
    Zip,
    Json,
    Csv,
    Parquet,
    Png,
)
