"""Catalogues: a dataset of many archives as one Parquet file, and loaders that start from it.

``medmask catalog PATHS -o catalog.parquet`` (:meth:`Catalog.build` + :meth:`Catalog.write`)
writes one row per mask of every archive: :func:`medmask.stats`'s table plus each
archive's fingerprint (size, commit generation, index checksum), each mask's position and
blob byte range, and the archive's attributes (source identifiers, the ``annotated`` list
of partial labels). The schema is versioned and documented in ``docs/format.md``
("Catalogue files").

:meth:`Catalog.open` reads a catalogue (one GET for a URL); :meth:`Catalog.filter` selects
rows with pandas; :meth:`Catalog.union` joins cohorts; :meth:`Catalog.datalist` and the
MONAI loaders (``medmask_monai``) take a catalogue instead of paths, so that startup reads
one file, not one index per archive. Each archive a loader opens is checked against its
row first (:func:`open_checked`): a changed archive raises
:class:`~medmask.errors.StaleCatalogError`, a missing one
:class:`~medmask.errors.MissingArchiveError`, both naming archive and catalogue.

Modules: :mod:`.schema` (the columns and version), :mod:`.build` (reading the files, in
processes or on Dask; updates), :mod:`.store` (reading and writing the file),
:mod:`.catalog` (:class:`Catalog`), :mod:`.refs` (:class:`ArchiveRef`, the staleness check).
pandas and pyarrow are imported on use (the ``stats`` extra).
"""

from __future__ import annotations

from .catalog import Archives, Catalog
from .refs import ON_STALE, ArchiveRef, StaleArchiveWarning, check_file, open_checked
from .schema import COLUMNS, META_KEY, SCHEMA_VERSION

__all__ = [
    "Catalog",
    "Archives",
    "ArchiveRef",
    "StaleArchiveWarning",
    "ON_STALE",
    "open_checked",
    "check_file",
    "COLUMNS",
    "META_KEY",
    "SCHEMA_VERSION",
]
