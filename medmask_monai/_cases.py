"""Loading cases named by a catalogue (:class:`medmask.catalog.ArchiveRef`, checked against
their row first) and painting them under a label scheme, with ``label_available``.

A case mapped onto a scheme (:func:`medmask.schemes.case_labels`) is painted from its
stored masks at index level: each class is the union of the masks that make it, painted
with the scheme's label (``"labelmap"``) or into the scheme's channel (``"channels"``: one
channel per class, in the scheme's order, empty when the case lacks it). Its
``label_available`` (one bool per class, the scheme's order) says which classes its
annotators covered: a partial-label loss ignores the others.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from medmask import MaskArchive
from medmask.catalog import ArchiveRef, check_file, open_checked
from medmask.catalog.refs import ON_STALE
from medmask.errors import MaskValidationError
from medmask.io import Target
from medmask.schemes import LabelScheme, case_labels

from ._load import Names, load_mask_array

__all__ = ["SchemePainter", "open_case", "load_ref", "load_case", "check_on_stale"]


def check_on_stale(on_stale: str) -> str:
    """Validate ``on_stale`` (``"raise"`` or ``"reread"``)."""
    if on_stale not in ON_STALE:
        raise MaskValidationError(f"on_stale must be 'raise' or 'reread', got {on_stale!r}")
    return on_stale


@contextlib.contextmanager
def open_case(
    path: str | os.PathLike, storage_options: Mapping[str, Any] | None, on_stale: str
) -> Iterator[MaskArchive]:
    """An archive, opened for one read: a catalogued one (:class:`ArchiveRef`) checked
    against its row first.

    Raises:
        MissingArchiveError: A catalogued archive is gone. StaleCatalogError: It changed.
    """
    if isinstance(path, ArchiveRef):
        ar = open_checked(path, storage_options=storage_options, on_stale=on_stale)
    else:
        ar = MaskArchive(Target.of(path, storage_options))
    with ar:
        yield ar


def load_ref(
    ref: ArchiveRef,
    names: Names,
    *,
    mode: str,
    dtype: Any,
    missing: str,
    storage_options: Mapping[str, Any] | None,
    on_stale: str,
) -> tuple[np.ndarray, dict]:
    """:func:`~medmask_monai._load.load_mask_array` of a catalogued file, checked first."""
    kw = {"mode": mode, "dtype": dtype, "missing": missing, "storage_options": storage_options}
    if not ref.is_archive:
        check_file(ref, storage_options=storage_options, on_stale=on_stale)
        return load_mask_array(ref.path, names, **kw)
    with open_case(ref, storage_options, on_stale) as ar:
        return load_mask_array(ref.path, names, archive=ar, **kw)


class SchemePainter:
    """Paint cases under a scheme (see the module docstring).

    Args:
        scheme: The target scheme.
        mode: ``"labelmap"`` (scheme labels) or ``"channels"`` (one channel per class).
        dtype: Output dtype (default as for ``LoadMask``).
        storage_options: fsspec options for URLs.
        on_stale: ``"raise"`` or ``"reread"`` for catalogued archives that changed.
        source: The class-map id the mask names come from (scoped synonyms).
        include_partial: Paint (and count as available) derived classes with some parts.
    """

    def __init__(
        self,
        scheme: LabelScheme,
        *,
        mode: str = "labelmap",
        dtype: Any = None,
        storage_options: Mapping[str, Any] | None = None,
        on_stale: str = "raise",
        source: str | None = None,
        include_partial: bool = False,
    ) -> None:
        if not isinstance(scheme, LabelScheme):
            raise MaskValidationError(
                f"scheme must be a medmask.schemes.LabelScheme (get_scheme('totalseg'), "
                f"LabelScheme(name, classes)), got {type(scheme).__name__}"
            )
        self.scheme = scheme
        self.mode = mode
        self.dtype = dtype
        self.storage_options = None if storage_options is None else dict(storage_options)
        self.on_stale = check_on_stale(on_stale)
        self.source = source
        self.include_partial = include_partial
        self._labels = scheme.labels()

    def __call__(self, path: str | os.PathLike) -> tuple[np.ndarray, dict]:
        """``(array (C, x, y, z), meta)`` of one case; ``meta["label_available"]`` is its
        availability vector and ``meta["labels"]`` the scheme's ``{class: label}``.

        Raises:
            MissingArchiveError, StaleCatalogError: A catalogued archive is gone or changed.
            MaskValidationError: ``path`` is not an archive.
        """
        where = os.fspath(path)
        with open_case(path, self.storage_options, self.on_stale) as ar:
            cl = case_labels(
                self.scheme,
                ar.all_names(),
                ar.archive_attrs,
                source=self.source,
                include_partial=self.include_partial,
            )
            table = cl.table.to_dict()
            top = max(self._labels)
            dtype = self.dtype
            if dtype is None and self.mode == "labelmap":
                from ._load import label_dtype

                dtype = label_dtype(top)  # one dtype for every case, whatever it holds
            array, meta = load_mask_array(
                where, table, mode=self.mode, dtype=dtype, missing="raise", archive=ar
            )
        if self.mode == "channels":
            array = self._scheme_channels(array, sorted(set(table.values())))
        meta["labels"] = self.scheme.table().to_dict()
        meta["label_available"] = np.array(cl.available, dtype=bool)
        return array, meta

    def _scheme_channels(self, array: np.ndarray, present: list[int]) -> np.ndarray:
        """The loaded channels (one per label present) put at their class's channel (an
        ``(x, y, z)`` view of a ``(C, z, y, x)`` buffer, as every loaded array)."""
        zyx = array.shape[1:][::-1]
        out = np.zeros((len(self._labels), *zyx), array.dtype).transpose(0, 3, 2, 1)
        for k, label in enumerate(present):
            out[self._labels.index(label)] = array[k]
        return out


def load_case(
    reader: Any, painter: SchemePainter | None, path: Any, on_stale: str
) -> tuple[np.ndarray, dict]:
    """What ``LoadMask`` loads: a case painted under a scheme (``painter``), a catalogued
    file checked first, or a path read by ``reader`` (a :class:`~medmask_monai.MaskReader`)."""
    if painter is not None:
        return painter(path)
    if isinstance(path, ArchiveRef):
        return load_ref(
            path,
            reader.names,
            mode=reader.mode,
            dtype=reader.dtype,
            missing=reader.missing,
            storage_options=reader.storage_options,
            on_stale=on_stale,
        )
    return reader.get_data(path)
