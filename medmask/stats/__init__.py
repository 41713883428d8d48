"""Statistics of a mask dataset, from the archives' index (pandas; the ``stats`` extra).

``medmask.stats(paths)`` describes every mask of a dataset in one :class:`pandas.DataFrame`
without decoding a voxel where the files allow it: a version-2 archive stores each mask's
voxel count and bounding box in its index, and formats 2.2 (written by this release) and
2.1 (medmask 0.3.0) its centroid and attributes too. What an older file lacks is computed by decoding, and the ``source`` column
says so for each row:

==========================  ==========================================================
file                        where the figures come from
==========================  ==========================================================
``.mska`` format 2.2, 2.1   the index alone (``source == "index"``)
``.mska`` format 2.0        voxels and box from the index; the centroid of each
(medmask 0.2.0)             non-empty mask by decoding its bounding box (``"decoded"``)
``.mska`` version 1         every mask decoded in full (``"decoded"``): version 1 has
(medmask 0.1.x)             no per-mask statistics; ``medmask convert`` upgrades it
``.msk`` (any version)      the file's bounding box decoded (``"decoded"``)
==========================  ==========================================================

Modules: :mod:`.files` (finding the files), :mod:`.rows` (the rows of one file: from the
index, or by decoding what its layout lacks), :mod:`.table` (the tables). The row layout
they share is documented here once.

Columns of the per-mask table, one row per mask:

* ``case``: the file's stem (``s0000.mska`` -> ``s0000``); for a ``.msk`` file, the name
  of its folder (a case stored as one ``.msk`` per organ).
* ``name``: the mask's name (for a ``.msk``, the file's stem).
* ``voxels``: number of non-zero voxels; ``volume_ml``: voxels x voxel volume / 1000.
* ``bbox``: half-open voxel box ``(z0, z1, y0, y1, x0, x1)`` in medmask's ``(z, y, x)``
  array order (NIfTI ``i, j, k`` are ``x, y, z``); ``None`` when empty.
* ``centroid_ras_mm``: the centre of mass in world RAS millimetres, as nibabel
  (``img.affine @ mean ijk``) and MONAI report coordinates; ``None`` when empty.
* ``touches_border``: the mask reaches a face of the image grid (it may be cut off).
* ``empty``: no voxel is set.
* the mask's stored attributes, one column per attribute key present in the dataset
  (``color``, ``description``, ``label_value``, coded concepts; see :mod:`medmask.attrs`).
* the archive's own attributes (format 2.3), one column ``archive_<key>`` per key present
  in the dataset (``archive_source``, ``archive_grid``, ``archive_annotated``...), the same
  on every row of an archive; ``None`` where an archive lacks the key.
* ``labels`` (the ``{name: label}`` mapping), ``source`` (``"index"`` or ``"decoded"``),
  ``format`` (``"2.3"``, ``"2.2"``, ``"2.1"``, ``"2.0"``, ``"1"``) and ``path``.

:func:`summarize` gives one row per mask name across the dataset, and :func:`lacking` the
cases without a given organ (for building cohorts).

The module is callable: ``medmask.stats(paths)`` is :func:`stats`.

Example:
    >>> import medmask                                                       # doctest: +SKIP
    >>> df = medmask.stats("packed/")                                        # doctest: +SKIP
    >>> medmask.stats.summarize(df)                                          # doctest: +SKIP
    >>> df[(df.name == "liver") & ~df.empty & ~df.touches_border].case.tolist()  # doctest: +SKIP
"""

from __future__ import annotations

import gc
import sys
import types
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import MaskValidationError, MedMaskError
from ..io.target import Target
from .files import PathArg, find_mask_files
from .rows import Part, file_part
from .table import MASK_COLUMNS, SUMMARY_COLUMNS, _pd, frame, lacking, summarize

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["stats", "summarize", "lacking", "find_mask_files", "MASK_COLUMNS", "SUMMARY_COLUMNS"]


def _wrap_progress(
    progress: bool | Callable[[Iterable], Iterable] | None, total: int
) -> Callable[[Iterable], Iterable]:
    if callable(progress):
        return progress
    show = progress if progress is not None else (total > 20 and sys.stderr.isatty())
    if not show:
        return lambda it: it
    try:
        from tqdm import tqdm
    except ImportError:  # the ``cli`` extra is optional
        return lambda it: it
    return lambda it: tqdm(it, total=total, desc="stats", unit="file", leave=False)


# -- the table --------------------------------------------------------------------------------
def stats(
    paths: PathArg | Sequence[PathArg],
    *,
    storage_options: dict | None = None,
    progress: bool | Callable[[Iterable], Iterable] | None = None,
    on_error: str = "raise",
) -> pd.DataFrame:
    """One row per mask of every ``.mska``/``.msk`` file under ``paths``.

    Version-2 archives answer from their index; what a file's index lacks (centroids of
    medmask 0.2.0 archives, everything for version-1 files) is computed by decoding, and the
    row's ``source`` column says ``"decoded"``. See the module docstring for the columns.

    Args:
        paths: Files, folders (searched recursively) and URLs (``s3://bucket/prefix/``
            folders expand through fsspec), one or a sequence.
        storage_options: fsspec options for URLs (endpoint, credentials).
        progress: ``True`` for a progress bar, ``False`` for none, a wrapper such as
            ``tqdm.tqdm``, or ``None`` (default): a bar on a terminal for more than 20 files.
        on_error: ``"raise"`` (default): an unreadable file raises; ``"skip"``: it is left
            out with a warning, and listed as ``(path, message)`` in ``df.attrs["failed"]``.

    Returns:
        A :class:`pandas.DataFrame`; ``df.attrs`` holds ``files`` (the files read),
        ``failed`` and ``decoded`` (how many rows needed decoding).

    Raises:
        FileNotFoundError: A path that does not exist.
        CorruptFileError: A damaged file (message names file and mask); not with ``"skip"``.
        MaskValidationError: A URL this build cannot read; a bad ``on_error``.
        ImportError: pandas is not installed.
    """
    if on_error not in ("raise", "skip"):
        raise MaskValidationError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    pd = _pd()
    files = find_mask_files(paths, storage_options=storage_options)
    parts: list[Part] = []
    failed: list[tuple[str, str]] = []
    paused = _CollectorPaused()
    try:
        for k, f in enumerate(_wrap_progress(progress, len(files))(files)):
            if k % _GC_BATCH == 0:
                paused.new_batch()
            try:
                part = file_part(Target.of(f, storage_options))
                if part is not None:
                    parts.append(part)
            except (MedMaskError, OSError, ValueError) as exc:
                if on_error == "raise":
                    raise
                text = str(exc).strip()
                msg = text.splitlines()[0] if text else type(exc).__name__
                if f not in msg:
                    msg = f"{f}: {msg}"
                warnings.warn(f"medmask.stats: skipped {msg}", RuntimeWarning, stacklevel=2)
                failed.append((f, msg))
    finally:
        paused.end()
    return frame(
        pd, parts, files=[f for f in files if f not in {x for x, _ in failed}], failed=failed
    )


#: Files read with Python's cyclic garbage collector paused (see :func:`_collector_paused`).
_GC_BATCH = 256


class _CollectorPaused:
    """Python's cyclic garbage collector paused while files are read, batch by batch
    (reference counting still frees everything at once).

    Reading an index creates about ten small containers per mask, none of them in a cycle,
    and most live until the table is built; each counts towards the collector's
    thresholds, which then re-scan every object of the process again and again (in a
    process holding pandas and nibabel, a fifth of the time of ``stats``). The collector is
    re-enabled between batches of :data:`_GC_BATCH` files (so garbage that other code makes
    meanwhile waits at most one batch) and at the end, as it was found.
    """

    def __init__(self) -> None:
        self._was = gc.isenabled()

    def new_batch(self) -> None:
        """Collect the objects made since the last batch once (young generation only),
        then pause the collector again."""
        if self._was:
            gc.enable()
            gc.collect(0)  # the young objects of the batch, scanned once
            gc.disable()

    def end(self) -> None:
        """Restore the collector as it was found."""
        if self._was:
            gc.enable()


class _CallableModule(types.ModuleType):
    """``medmask.stats`` is this module and also the function :func:`stats`."""

    def __call__(self, *args: Any, **kwargs: Any) -> pd.DataFrame:
        return stats(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
