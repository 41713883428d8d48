"""A training case: an image and the archive of its masks (what a patch loader iterates)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import MaskValidationError, SpaceMismatchError
from ..geometry import grid_offset
from ..spaces import Space, describe_space
from .images import ImageSource

__all__ = ["PatchCase", "as_case", "archive_offset"]


@dataclass(frozen=True)
class PatchCase:
    """One case of a patch dataset.

    Attributes:
        image: The image: a path (``.nii``, ``.b2nd``, zarr; ``.nii.gz`` read whole) or an
            :class:`~medmask.patches.images.ImageSource`.
        archive: The ``.mska`` of its masks: a path or URL.
        classes: The classes annotated in this case (partially labelled data): foreground
            centres are drawn only from these; ``None``: every mask of the archive.
        name: An identifier for messages and outputs (default: the archive's file name).
    """

    image: str | os.PathLike | ImageSource
    archive: str | os.PathLike
    classes: frozenset[str] | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if self.classes is not None and not isinstance(self.classes, frozenset):
            object.__setattr__(self, "classes", frozenset(_names(self.classes)))

    @property
    def label(self) -> str:
        """The case's name in messages."""
        return self.name or os.path.basename(str(self.archive).rstrip("/"))


def _names(classes: Any) -> list[str]:
    if isinstance(classes, str) or not isinstance(classes, Iterable):
        raise MaskValidationError(f"classes must be a collection of names, got {classes!r}")
    return [str(c) for c in classes]


def as_case(item: PatchCase | Mapping | tuple | list) -> PatchCase:
    """A :class:`PatchCase` from one, a ``(image, archive)`` pair or a mapping with ``image``,
    ``archive`` and optionally ``classes`` and ``name``.

    Raises:
        MaskValidationError: Anything else.
    """
    if isinstance(item, PatchCase):
        return item
    if isinstance(item, Mapping):
        unknown = set(item) - {"image", "archive", "classes", "name"}
        if "image" in item and "archive" in item and not unknown:
            return PatchCase(**dict(item))
    elif isinstance(item, tuple | list) and len(item) == 2:
        return PatchCase(item[0], item[1])
    raise MaskValidationError(
        "a case is a PatchCase, an (image, archive) pair or a dict with 'image' and 'archive' "
        f"(and optionally 'classes', 'name'); got {item!r}"
    )


def archive_offset(
    archive_space: Space,
    image_shape: Iterable[int],
    image_space: Space | None,
    *,
    archive_name: str,
    image_name: str,
) -> tuple[int, int, int]:
    """Where an archive lies on its image's grid (the check before any patch is cut).

    With the image's space: :func:`medmask.geometry.grid_offset` (one lattice, an integer
    offset, else an error naming both grids). Without it (a file that records no geometry,
    e.g. nnU-Net's ``.b2nd``): the grids' shapes must be equal, and the offset is 0.

    Returns:
        ``(dz, dy, dx)``: archive voxel ``v`` is image voxel ``v + offset``.

    Raises:
        SpaceMismatchError: The grids are not one lattice (or, without the image's space,
            their shapes differ); the message names and describes both.
    """
    if image_space is not None:
        try:
            return grid_offset(archive_space, image_space)
        except SpaceMismatchError as exc:
            raise SpaceMismatchError(
                f"{archive_name} (the masks) and {image_name} (the image): {exc.message}; a "
                "patch would be misaligned"
            ) from None
    shape = tuple(int(s) for s in image_shape)
    if shape != tuple(int(s) for s in archive_space.shape):
        raise SpaceMismatchError(
            f"{image_name} (grid (z, y, x) {shape}; its file records no geometry) is not on "
            f"the grid of {archive_name} ({describe_space(archive_space)}): a patch would be "
            "misaligned; write the image on the masks' grid (or give its affine)"
        )
    return 0, 0, 0
