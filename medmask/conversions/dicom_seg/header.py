"""What a DICOM file says about itself before its frames: the SEG's identifiers (to name
its archive and join it back to the images), the series it belongs to and the series it
segments. Read from the first bytes of a file (no per-frame groups, no pixel data), so a
collection's thousands of files are sorted out quickly."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from ...errors import MaskValidationError
from ...io.formats import SEG_SOP_CLASSES, dicom_sop_class
from .base import _pydicom
from .items import segment_items

__all__ = ["DicomHeader", "read_dicom_header", "seg_identifiers", "multi_value"]

#: Bytes read first; a header that goes on is read further, up to :data:`MAX_HEADER`.
FIRST_BYTES = 64 * 1024
MAX_HEADER = 64 * 1024 * 1024


@dataclass
class DicomHeader:
    """The header of a DICOM file, up to its per-frame functional groups.

    Attributes:
        sop_class: The Media Storage SOP Class UID of the file meta (``""`` when absent).
        is_seg: Whether it is a Segmentation (BINARY/FRACTIONAL or LABELMAP).
        series_uid: Its own SeriesInstanceUID.
        frame_of_reference: Its FrameOfReferenceUID.
        referenced_series: The SeriesInstanceUIDs a SEG segments
            (``ReferencedSeriesSequence``), in file order.
        ids: For a SEG, :func:`seg_identifiers`.
        dataset: The pydicom dataset read so far (for ``--name-by``: any attribute of the
            header).
    """

    sop_class: str
    is_seg: bool
    series_uid: str = ""
    frame_of_reference: str = ""
    referenced_series: list[str] = field(default_factory=list)
    ids: dict = field(default_factory=dict)
    dataset: object = None

    def attribute(self, keyword: str) -> str | None:
        """The value of a header attribute (a DICOM keyword such as ``PatientID``) as text,
        or ``None`` when the header does not hold it or it is empty."""
        ds = self.dataset
        if ds is None:
            return None
        try:
            value = ds.get(keyword)
        except Exception:  # noqa: BLE001 - pydicom raises on malformed values
            return None
        if value is None or hasattr(value, "value") or isinstance(value, list | tuple):
            return None
        text = str(value).strip()
        return text or None


def _stop_before_frames(tag, _vr, _length) -> bool:
    """Stop at the per-frame functional groups and pixel data (groups 0x5200 and up)."""
    return tag.group >= 0x5200


def _parse(raw: bytes) -> tuple[object, bool]:
    """The dataset in ``raw`` up to the per-frame groups, and whether it got there (rather
    than to the end of ``raw``)."""
    _pydicom()  # a clear ImportError without the ``dicom`` extra
    from pydicom.filereader import read_partial

    fh = io.BytesIO(raw)
    ds = read_partial(fh, stop_when=_stop_before_frames)
    return ds, fh.tell() < len(raw)


def read_dicom_header(
    path: str | os.PathLike, *, read: Callable[[int], bytes] | None = None
) -> DicomHeader | None:
    """The header of a DICOM file, or ``None`` when the file is not DICOM (no ``DICM``).

    Args:
        path: The file (also the name used in messages).
        read: ``read(n)`` returns the first ``n`` bytes (fewer when the file is shorter);
            default: read the local file. A URL's first bytes come through its byte source.

    Returns:
        The header.

    Raises:
        MaskValidationError: A DICOM file whose header cannot be read, or a SEG whose file
            ends before its frames (truncated, damaged); the message names the file.
        OSError: The file cannot be read.
    """
    if read is None:

        def read(n: int) -> bytes:
            with open(path, "rb") as fh:
                return fh.read(n)

    n = FIRST_BYTES
    while True:
        raw = read(n)
        sop = dicom_sop_class(raw)
        if sop is None and raw[128:132] != b"DICM":
            return None
        whole = len(raw) < n  # the whole file is in ``raw``
        try:
            ds, stopped = _parse(raw)
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types
            if whole or n >= MAX_HEADER:
                raise _damaged(path, f"its header cannot be read ({_line(exc)})") from None
            n *= 8
            continue
        if stopped or whole or n >= MAX_HEADER:
            header = _header(sop or "", ds)
            if header.is_seg and not stopped:
                raise _damaged(path, "the file ends before its frames")
            return header
        n *= 8


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _damaged(path: object, what: str) -> MaskValidationError:
    return MaskValidationError(f"{path}: truncated or damaged DICOM file: {what}")


def _header(sop: str, ds) -> DicomHeader:
    sop = sop or str(ds.get("SOPClassUID", ""))
    is_seg = sop in SEG_SOP_CLASSES
    refs = []
    for item in ds.get("ReferencedSeriesSequence", []) or []:
        uid = str(item.get("SeriesInstanceUID", "") or "")
        if uid and uid not in refs:
            refs.append(uid)
    return DicomHeader(
        sop_class=sop,
        is_seg=is_seg,
        series_uid=str(ds.get("SeriesInstanceUID", "") or ""),
        frame_of_reference=str(ds.get("FrameOfReferenceUID", "") or ""),
        referenced_series=refs,
        ids=seg_identifiers(ds) if is_seg else {},
        dataset=ds,
    )


def _algorithm(segments: list) -> tuple[list[str], list[str]]:
    """The algorithm names and versions its segments declare (unique, in order)."""
    names: list[str] = []
    versions: list[str] = []

    def add(into: list[str], value: object) -> None:
        text = str(value or "").strip()
        if text and text not in into:
            into.append(text)

    for seg in segments:
        add(names, seg.get("SegmentAlgorithmName"))
        for ident in seg.get("SegmentationAlgorithmIdentificationSequence", []) or []:
            add(names, ident.get("AlgorithmName"))
            add(versions, ident.get("AlgorithmVersion"))
    return names, versions


def seg_identifiers(ds, segments: list | None = None) -> dict:
    """The identifiers of a SEG that join it back to its images: ``PatientID``,
    ``StudyInstanceUID``, ``SeriesInstanceUID`` (of the *referenced* image series, when the
    SEG names one; the SEG's own series is ``SegSeriesInstanceUID``), the SEG's
    ``SOPInstanceUID``, ``Modality`` (of the SEG: ``SEG``) and the ``AlgorithmName`` /
    ``AlgorithmVersion`` of its segment descriptions (when segments differ, the distinct
    values joined by ``\\``, DICOM's multi-value separator: every value is a string, as the
    archive's ``source`` attribute wants). Attributes the file lacks are left out.

    Args:
        ds: A pydicom dataset of the SEG (its header is enough).
        segments: Its SegmentSequence items, when the caller has read them already
            (default: read here, :func:`~.items.segment_items`).

    Returns:
        A JSON-ready dict.
    """
    out: dict = {}
    for key in ("PatientID", "StudyInstanceUID"):
        value = str(ds.get(key, "") or "").strip()
        if value:
            out[key] = value
    refs = [
        str(item.get("SeriesInstanceUID", "") or "")
        for item in ds.get("ReferencedSeriesSequence", []) or []
    ]
    refs = [r for r in refs if r]
    own = str(ds.get("SeriesInstanceUID", "") or "")
    if refs:
        out["SeriesInstanceUID"] = refs[0]
    if own:
        out["SegSeriesInstanceUID"] = own
    for key in ("SOPInstanceUID", "Modality"):
        value = str(ds.get(key, "") or "").strip()
        if value:
            out[key] = value
    names, versions = _algorithm(segment_items(ds) if segments is None else segments)
    if names:
        out["AlgorithmName"] = multi_value(names)
    if versions:
        out["AlgorithmVersion"] = multi_value(versions)
    return out


def multi_value(values: list[str]) -> str:
    """Several values as one string, joined by ``\\`` as DICOM joins the values of a
    multi-valued attribute (``AlgorithmName`` / ``AlgorithmVersion`` of an archive's
    ``source`` are strings)."""
    return "\\".join(values)
