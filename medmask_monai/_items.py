"""The items of a :class:`~medmask_monai.MaskArchiveDataset` built from a catalogue: arrays
over the catalogue's rows (no Python object per mask, no archive opened)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from medmask.catalog import Catalog
from medmask.errors import MaskNotFoundError, close_matches

from ._load import MissingNameWarning

__all__ = ["ItemArrays", "catalog_items"]


class ItemArrays(Sequence):
    """``(archive position, mask position, mask name)`` per item, held as arrays.

    Args:
        archive: ``(n,)`` archive positions.
        position: ``(n,)`` mask positions in their archive.
        name_code: ``(n,)`` indices into ``names``.
        names: The distinct names.
    """

    def __init__(
        self, archive: np.ndarray, position: np.ndarray, name_code: np.ndarray, names: list[str]
    ) -> None:
        self.archive, self.position, self.name_code, self.names = (
            archive,
            position,
            name_code,
            names,
        )

    def __len__(self) -> int:
        return len(self.archive)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        return int(self.archive[i]), int(self.position[i]), self.names[self.name_code[i]]


def catalog_items(
    cat: Catalog,
    names: list[str] | None,
    *,
    strict: bool,
    min_voxels: int | None,
) -> ItemArrays:
    """The items of a catalogue's rows: every row (catalogue order), or the rows of
    ``names`` (in that order within each archive), with at least ``min_voxels``.

    Raises:
        MaskNotFoundError: ``strict`` and an archive lacks one of ``names``.
    """
    t = cat.table
    archive = cat.archive_index()
    position = t.column("position").to_numpy()
    col = t.column("name").combine_chunks()
    code = col.indices.to_numpy(zero_copy_only=False)
    dictionary: list[str] = col.dictionary.to_pylist()
    keep = np.ones(len(archive), dtype=bool)
    if min_voxels is not None:
        keep &= t.column("voxels").to_numpy() >= min_voxels
    if names is not None:
        rank = np.full(len(dictionary), -1, dtype=np.int64)
        where = {n: k for k, n in enumerate(dictionary)}
        for r, n in enumerate(names):
            if n in where:
                rank[where[n]] = r
        row_rank = rank[code]
        _check_names(cat, names, archive, row_rank, strict, dictionary)
        keep &= row_rank >= 0
        order = np.lexsort((row_rank, archive))
        order = order[keep[order]]
    else:
        order = np.flatnonzero(keep)
    return ItemArrays(archive[order].astype(np.int32), position[order], code[order], dictionary)


def _check_names(cat, names, archive, row_rank, strict, dictionary) -> None:
    """Raise (``strict``) for an archive lacking a name; warn for a name in no archive."""
    found = set(row_rank[row_rank >= 0].tolist())
    if strict:
        counts = np.bincount(archive[row_rank >= 0], minlength=len(cat.archive_paths()))
        short = np.flatnonzero(counts < len(names))
        if short.size:
            a = int(short[0])
            have = set(
                np.asarray(dictionary, dtype=object)[
                    cat.table.column("name").combine_chunks().indices.to_numpy()[archive == a]
                ].tolist()
            )
            lacking = [n for n in names if n not in have]
            raise MaskNotFoundError(
                f"no mask named {lacking[0]!r} (catalogue {cat.source or '(built)'})"
                + close_matches(lacking[0], have),
                path=cat.archive_paths()[a],
            )
    for r, n in enumerate(names):
        if r not in found:
            warnings.warn(
                f"MaskArchiveDataset: no mask named {n!r} in any of the "
                f"{len(cat.archive_paths())} archives of the catalogue"
                + close_matches(n, dictionary),
                MissingNameWarning,
                stacklevel=4,
            )
