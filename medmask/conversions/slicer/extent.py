"""Whether a ``.seg.nrrd``'s grid is the image's that Slicer segmented, or a crop of it.

Slicer saves a segmentation on the extent its segments cover by default, and records the
image it was made on in the header: ``Segmentation_ReferenceImageExtentOffset`` (where the
file's first voxel lies in that image, in voxels) and, in ``Segmentation_ConversionParameters``,
the ``Reference image geometry`` (its matrix and extent). A file cropped that way packs to an
archive on the crop's grid: masks that do not line up with the image voxel for voxel unless
they are placed on its grid, so ``pack`` says so and the archive records it (``grid``).
"""

from __future__ import annotations

import os

import numpy as np

from .base import _nrrd

__all__ = ["reference_extent", "grid_kind"]


def reference_extent(header: dict) -> tuple[tuple[int, int, int], tuple[int, int, int]] | None:
    """The file's place in the image Slicer segmented, from its header.

    Args:
        header: The NRRD header (``pynrrd``'s dict).

    Returns:
        ``(offset, sizes)``: the file's first voxel in the image (``i, j, k``) and the image's
        sizes (``i, j, k``); ``None`` when the header does not say (not written by Slicer,
        or a field that does not parse).
    """
    params = str(header.get("Segmentation_ConversionParameters", ""))
    offset_text = str(header.get("Segmentation_ReferenceImageExtentOffset", "")).split()
    for entry in params.split("&"):
        name, _, rest = entry.partition("|")
        if name.strip() != "Reference image geometry":
            continue
        numbers = [v for v in rest.partition("|")[0].split(";") if v.strip()]
        if len(numbers) != 22:  # a 4x4 matrix, then the extent (i0 i1 j0 j1 k0 k1)
            return None
        try:
            ext = [int(float(v)) for v in numbers[16:]]
            offset = tuple(int(float(v)) for v in offset_text) if offset_text else (0, 0, 0)
        except ValueError:
            return None
        if len(offset) != 3:
            return None
        sizes = tuple(ext[2 * a + 1] - ext[2 * a] + 1 for a in range(3))
        return (offset[0], offset[1], offset[2]), (sizes[0], sizes[1], sizes[2])
    return None


def grid_kind(path: str | os.PathLike) -> tuple[str | None, str | None]:
    """What a ``.seg.nrrd``'s grid is, and the line ``pack`` says when it is a crop.

    Args:
        path: The file.

    Returns:
        ``(kind, note)``: ``kind`` is ``"image"`` (the file covers the whole image Slicer
        segmented), ``"segmentation"`` (a crop of it) or ``None`` (the header does not say);
        ``note`` is the line for a crop, else ``None``.
    """
    with open(path, "rb") as fh:
        try:
            header = _nrrd().read_header(fh)
        except Exception:  # noqa: BLE001 - the reader proper reports a bad header
            return None, None
    ref = reference_extent(header)
    if ref is None:
        return None, None
    offset, image = ref
    sizes = [int(s) for s in np.atleast_1d(header.get("sizes", []))]
    if len(sizes) < 3:
        return None, None
    own = (sizes[-3], sizes[-2], sizes[-1])
    if offset == (0, 0, 0) and own == image:
        return "image", None
    i, j, k = own
    note = (
        f"the archive's grid is the extent the .seg.nrrd was saved on ({k} slices of {j} x {i} "
        f"at voxel offset (i, j, k) {offset}), not the image Slicer segmented "
        f"({image[2]} slices of {image[1]} x {image[0]}): load with LoadMaskd(..., "
        "like='image') to place the masks on the image's grid, or save the segmentation "
        "uncropped in Slicer"
    )
    return "segmentation", note
