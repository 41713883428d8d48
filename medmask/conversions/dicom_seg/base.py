"""DICOM SEG shared pieces: the optional imports, SOP class UIDs, CIELab <-> sRGB colours
and small error/parsing helpers used by reading and writing alike."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ...errors import MaskValidationError

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
LABELMAP_SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.7"
_UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}


def _pydicom():
    try:
        import pydicom
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError('DICOM SEG support needs pydicom: pip install "medmask[dicom]"') from None
    return pydicom


# -- colours ------------------------------------------------------------------------------
_D65 = np.array([0.95047, 1.0, 1.08883])
_M = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])


def rgb_to_cielab(rgb: Iterable[int]) -> tuple[int, int, int]:
    """sRGB (0-255) as DICOM's scaled CIELab triplet (0-65535 each).

    Args:
        rgb: Three integers 0-255.

    Returns:
        ``(L, a, b)`` scaled as ``RecommendedDisplayCIELabValue`` stores them.
    """
    c = np.clip(np.asarray(list(rgb)[:3], float) / 255.0, 0, 1)
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = (_M @ lin) / _D65
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    L, a, b = 116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])
    return (
        int(round(np.clip(L, 0, 100) * 65535 / 100)),
        int(round((np.clip(a, -128, 127) + 128) * 65535 / 255)),
        int(round((np.clip(b, -128, 127) + 128) * 65535 / 255)),
    )


#: The inverse of :data:`_M` (XYZ -> linear sRGB), as rows of Python floats: a colour is
#: converted per segment, and three scalars are cheaper in Python than in numpy.
_M_INV = [[float(v) for v in row] for row in np.linalg.inv(_M)]
_D65_F = [float(v) for v in _D65]


def cielab_to_rgb(lab: Iterable[int]) -> list[int]:
    """DICOM's scaled CIELab triplet as sRGB 0-255 (the inverse of :func:`rgb_to_cielab`)."""
    L, a, b = (float(v) for v in list(lab)[:3])
    L, a, b = L * 100 / 65535, a * 255 / 65535 - 128, b * 255 / 65535 - 128
    fy = (L + 16) / 116
    xyz = [
        (f**3 if f > 6 / 29 else 3 * (6 / 29) ** 2 * (f - 4 / 29)) * d
        for f, d in zip((fy + a / 500, fy, fy - b / 200), _D65_F, strict=True)
    ]
    out = []
    for row in _M_INV:
        lin = min(1.0, max(0.0, row[0] * xyz[0] + row[1] * xyz[1] + row[2] * xyz[2]))
        c = 12.92 * lin if lin <= 0.0031308 else 1.055 * lin ** (1 / 2.4) - 0.055
        out.append(int(round(min(255.0, max(0.0, c * 255)))))
    return out


# -- errors and parsing ---------------------------------------------------------------------
def _err(path: object, what: str, fix: str = "") -> MaskValidationError:
    return MaskValidationError(f"{path}: {what}" + (f"; {fix}" if fix else ""))


def _floats(value: object, n: int) -> np.ndarray | None:
    try:
        arr = np.asarray([float(v) for v in value], dtype=np.float64)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return arr if arr.shape == (n,) and np.all(np.isfinite(arr)) else None
