"""What a source is, by its content (not only by its name).

:func:`detect` answers one of :data:`KINDS`:

* ``"mska"`` / ``"msk"``: a medmask file (magic ``MSKA`` / ``MSK``);
* ``"nifti"``: a NIfTI-1/2 file, plain or gzip-compressed (header size 348/540 and the
  ``n+1``/``ni1``/``n+2``/``ni2`` magic, looked up after inflating the first bytes);
* ``"seg.nrrd"``: an NRRD file (``NRRD000x`` magic) whose header has Slicer's
  ``Segment0_*``/``Segmentation_*`` fields (a plain NRRD is ``"nrrd"``);
* ``"dicom-seg"``: a DICOM file (``DICM`` after the 128-byte preamble) of a Segmentation
  SOP class (a DICOM image is ``"dicom"``);
* ``"folder"``: a folder (of NIfTI masks, or a case folder).
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

from ..errors import MaskValidationError

__all__ = ["detect", "KINDS"]

KINDS = ("mska", "msk", "nifti", "seg.nrrd", "nrrd", "dicom-seg", "dicom", "folder")
_HEAD = 64 * 1024


def _nifti_magic(head: bytes) -> bool:
    if len(head) < 348:
        return False
    for order in ("<", ">"):
        size = int.from_bytes(head[:4], "little" if order == "<" else "big")
        if size == 348 and head[344:347] in (b"n+1", b"ni1"):
            return True
        if size == 540 and head[4:7] in (b"n+2", b"ni2"):
            return True
    return False


def detect(path: str | os.PathLike) -> str:
    """The kind of a source file or folder, by content.

    Args:
        path: A file or folder.

    Returns:
        One of :data:`KINDS`.

    Raises:
        FileNotFoundError: No such file or folder.
        MaskValidationError: A file medmask cannot recognise (the message says what its
            first bytes look like and which formats are understood).
    """
    p = Path(path)
    if p.is_dir():
        return "folder"
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder")
    with open(p, "rb") as fh:
        head = fh.read(_HEAD)
    if head[:4] == b"MSKA":
        return "mska"
    if head[:3] == b"MSK":
        return "msk"
    if head[:7] == b"NRRD000":
        text = head.split(b"\n\n", 1)[0]
        if b"Segment0_" in text or b"Segmentation_" in text:
            return "seg.nrrd"
        return "nrrd"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return _dicom_kind(p)
    if head[:2] == b"\x1f\x8b":
        try:
            inner = zlib.decompressobj(wbits=31).decompress(head, 1024)
        except zlib.error:
            inner = b""
        if _nifti_magic(inner):
            return "nifti"
        if inner[:7] == b"NRRD000":
            return "nrrd"
        raise MaskValidationError(
            f"{p}: a gzip file that does not hold a NIfTI image; medmask reads NIfTI (.nii.gz), "
            "Slicer .seg.nrrd, DICOM SEG and .mska/.msk"
        )
    if _nifti_magic(head):
        return "nifti"
    raise MaskValidationError(
        f"{p}: not a format medmask recognises (first bytes {head[:8]!r}); it reads NIfTI "
        "(.nii/.nii.gz), 3D Slicer .seg.nrrd, DICOM SEG (.dcm) and .mska/.msk"
    )


def _dicom_kind(p: Path) -> str:
    from .dicom_seg.base import LABELMAP_SEG_SOP_CLASS, SEG_SOP_CLASS, _pydicom

    pydicom = _pydicom()
    try:
        ds = pydicom.dcmread(p, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except Exception as exc:  # noqa: BLE001
        raise MaskValidationError(
            f"{p}: a damaged DICOM file ({type(exc).__name__}: {exc})"
        ) from None
    sop = str(ds.get("SOPClassUID", ""))
    if sop in (SEG_SOP_CLASS, LABELMAP_SEG_SOP_CLASS):
        return "dicom-seg"
    return "dicom"
