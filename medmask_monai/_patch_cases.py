"""What :class:`~medmask_monai.PatchDataset` knows of each case before any patch: from the
archive's index, or from a catalogue's rows (no archive opened), with what the case was
annotated for (its sampler draws foreground centres from annotated masks only, and with a
scheme each patch carries ``label_available``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from medmask import MaskArchive
from medmask.catalog import Catalog
from medmask.catalog.schema import BBOX_COLUMNS
from medmask.errors import MaskValidationError
from medmask.patches import CaseIndex, PatchCase
from medmask.schemes import LabelScheme, case_labels
from medmask.spaces import Space

__all__ = ["CaseFacts", "facts_from_archive", "facts_from_catalog", "Images"]

#: How a catalogue's cases find their images: ``{case: image}`` or ``case -> image``.
Images = Mapping[str, Any] | Callable[[str], Any]


@dataclass(frozen=True)
class CaseFacts:
    """One case's index facts.

    Attributes:
        case: The case (its archive may be a :class:`medmask.catalog.ArchiveRef`).
        index: The sampler's view of the selected masks.
        space: The archive's ``(z, y, x)`` space.
        stored: Every mask name the archive stores.
        labels: ``{mask: output label}`` of the masks painted.
        allowed: The masks foreground centres may be drawn from (``None``: any).
        available: With a scheme, one bool per class (``label_available``).
    """

    case: PatchCase
    index: CaseIndex
    space: Space
    stored: list[str]
    labels: dict[str, int]
    allowed: frozenset[str] | None
    available: np.ndarray | None


def _select(
    stored: list[str],
    attrs: Mapping,
    names: dict[str, int] | None,
    scheme: LabelScheme | None,
    classes: frozenset[str] | None,
) -> tuple[dict[str, int], frozenset[str] | None, np.ndarray | None]:
    """``(labels, allowed, available)`` of a case: the scheme's mapping when given (every
    painted mask annotated), else ``names``; draws limited to the case's ``classes`` or,
    when it records one, its ``annotated`` list."""
    if scheme is not None:
        cl = case_labels(scheme, stored, attrs)
        labels = cl.table.to_dict()
        return labels, frozenset(labels), np.array(cl.available, dtype=bool)
    if names is None:
        labels = {n: k for k, n in enumerate(stored, start=1)}
    else:
        labels = {n: v for n, v in names.items() if n in stored}
    allowed = classes
    if allowed is None and attrs.get("annotated") is not None:
        allowed = frozenset(attrs["annotated"])
    return labels, allowed, None


def facts_from_archive(
    case: PatchCase,
    names: dict[str, int] | None,
    scheme: LabelScheme | None,
    storage_options: Mapping[str, Any] | None,
) -> CaseFacts:
    """A case's facts from its archive's index (the archive is opened once)."""
    with MaskArchive(case.archive, storage_options=storage_options) as ar:
        stored = ar.all_names()
        labels, allowed, available = _select(stored, ar.archive_attrs, names, scheme, case.classes)
        index = CaseIndex.of(ar, None if scheme is None and names is None else list(labels))
        space = ar.space
    return CaseFacts(case, index, space, stored, labels, allowed, available)


def _image_of(images: Images | None, case: str) -> Any:
    if images is None:
        raise MaskValidationError(
            "a patch dataset over a catalogue needs images=: {case: image path} or a function "
            "of the case name"
        )
    if callable(images):
        return images(case)
    try:
        return images[case]
    except KeyError:
        raise MaskValidationError(f"images= has no image for case {case!r}") from None


def facts_from_catalog(
    cat: Catalog,
    images: Images | None,
    names: dict[str, int] | None,
    scheme: LabelScheme | None,
) -> list[CaseFacts]:
    """Every archive's facts from the catalogue's rows: no archive is opened.

    Raises:
        MaskValidationError: No image for a case, or an archive without a recorded grid.
    """
    arch = cat.archives()
    base = cat._base or cat
    t = base.table
    voxels = t.column("voxels").to_numpy()
    box = np.column_stack([t.column(c).fill_null(0).to_numpy() for c in BBOX_COLUMNS])
    out = []
    for k, ref in enumerate(arch.refs):
        space = arch.space_of(k)
        if space is None:
            raise MaskValidationError("the catalogue records no grid for it", path=ref.path)
        stored = arch.names_of(k)
        case_name = arch.cases[k]
        case = PatchCase(_image_of(images, case_name), ref, name=case_name)
        labels, allowed, available = _select(stored, arch.attrs[k], names, scheme, None)
        rows = arch.rows_of(k)
        masks = {}
        for n, r in zip(stored, rows.tolist(), strict=True):
            if n in labels:
                v = int(voxels[r])
                masks[n] = (v, tuple(int(b) for b in box[r]) if v else None)
        shape = tuple(int(s) for s in space.shape)
        index = CaseIndex(os.fspath(ref), shape, masks)  # type: ignore[arg-type]
        out.append(CaseFacts(case, index, space, stored, labels, allowed, available))
    return out
