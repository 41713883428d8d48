"""What reading and writing ``.seg.nrrd`` share: the optional import of pynrrd, the patient
spaces NRRD files may declare, and the error of a bad header field."""

from __future__ import annotations

from ...errors import MaskValidationError

__all__ = ["NRRD_SPACES", "field_error", "_nrrd"]

#: NRRD ``space`` values medmask understands, as the sign flips that turn them into LPS.
NRRD_SPACES = {
    "left-posterior-superior": (1.0, 1.0, 1.0),
    "lps": (1.0, 1.0, 1.0),
    "right-anterior-superior": (-1.0, -1.0, 1.0),
    "ras": (-1.0, -1.0, 1.0),
    "left-anterior-superior": (1.0, -1.0, 1.0),
    "las": (1.0, -1.0, 1.0),
}


def _nrrd():
    try:
        import nrrd
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError('.seg.nrrd support needs pynrrd: pip install "medmask[nrrd]"') from None
    return nrrd


def field_error(path: object, field: str, what: str) -> MaskValidationError:
    """The error of a bad NRRD header ``field`` in ``path``."""
    return MaskValidationError(f"{path}: NRRD field {field!r}: {what}")
