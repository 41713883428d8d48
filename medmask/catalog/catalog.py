""":class:`Catalog`: a dataset of many archives as one table, opened from one file."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import MaskValidationError
from ..schemes import CaseLabels, LabelScheme, case_labels
from ..spaces import Space, space_from_disk_json
from .build import BuildResult, build_table, list_files
from .refs import ArchiveRef
from .schema import BBOX_COLUMNS, CENTROID_COLUMNS, NULLABLE_INTS, _pa, arrow_schema
from .store import read_table, write_table

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["Catalog", "Archives"]

Predicate = Callable[["pd.DataFrame"], Any]


@dataclass(frozen=True)
class Archives:
    """What a catalogue says about each of its archives (one entry per archive, in order;
    each list has one item per archive).

    Attributes:
        refs: One :class:`ArchiveRef` per archive.
        cases: The case names.
        attrs: Each archive's attributes (``{}`` when none).
    """

    refs: list[ArchiveRef]
    cases: list[str]
    attrs: list[dict]
    #: the name codes of every row, grouped by archive; ``(start, stop)`` per archive
    _codes: np.ndarray = field(repr=False)
    _spans: list[tuple[int, int]] = field(repr=False)
    _dictionary: list[str] = field(repr=False)
    #: the rows of the base table, grouped by archive (what ``_spans`` index)
    _rows: np.ndarray = field(repr=False)
    _spaces: list[str | None] = field(repr=False)

    def __len__(self) -> int:
        return len(self.refs)

    def rows_of(self, k: int) -> np.ndarray:
        """The positions, in the catalogue the names come from (``catalog._base`` or the
        catalogue itself), of archive ``k``'s rows, in archive order."""
        a, b = self._spans[k]
        return self._rows[a:b]

    def space_of(self, k: int) -> Space | None:
        """Archive ``k``'s ``(z, y, x)`` space (``None`` when not recorded)."""
        text = self._spaces[k]
        return None if text is None else space_from_disk_json(text.encode(), path=self.refs[k].path)

    def names_of(self, k: int) -> list[str]:
        """The masks archive ``k`` stores (as catalogued, archive order)."""
        a, b = self._spans[k]
        d = self._dictionary
        return [d[c] for c in self._codes[a:b].tolist()]

    def key_of(self, k: int) -> bytes:
        """A key equal for archives storing the same names in the same order."""
        a, b = self._spans[k]
        return self._codes[a:b].tobytes()

    @property
    def names(self) -> list[list[str]]:
        """The masks each archive stores."""
        return [self.names_of(k) for k in range(len(self.refs))]


def _list_column(pd: Any, pa: Any, table: Any, columns: Sequence[str], type_: Any) -> Any:
    """Flat columns joined into one list per row (null where the first is null), as an
    Arrow-backed pandas column: no Python object per row."""
    dtype = type_.to_pandas_dtype()
    parts = [table.column(c).fill_null(0).to_numpy() for c in columns]
    flat = np.column_stack(parts).astype(dtype).reshape(-1) if parts[0].size else np.zeros(0, dtype)
    mask = table.column(columns[0]).combine_chunks().is_null()
    lists = pa.FixedSizeListArray.from_arrays(pa.array(flat, type=type_), len(columns), mask=mask)
    return pd.Series(lists, dtype=pd.ArrowDtype(lists.type))


class Catalog:
    """One row per mask of many archives, read from (or written to) one Parquet file.

    A catalogue is what :func:`medmask.stats` returns, written down with what a loader needs
    later: each archive's fingerprint (size, commit generation, index checksum) and each
    mask's position and byte range (schema: ``docs/format.md``, "Catalogue files"). Opening
    one reads one file (one GET for a URL) instead of one index per archive; loaders take a
    catalogue instead of paths and check each archive against it when they first open it.

    Rows select masks (:meth:`filter` with pandas or a predicate); what each archive stores
    and was annotated for always comes from the whole catalogue a selection was taken from,
    so that a filtered catalogue still knows which classes a case lacks.

    Args:
        table: The rows, a :class:`pyarrow.Table` of the catalogue schema.
        source: Where the catalogue came from (its path or URL; ``""`` when built here).
        storage_options: fsspec options for the archives' URLs.

    Example:
        >>> cat = Catalog.build("packed/")                                  # doctest: +SKIP
        >>> cat.write("packed/catalog.parquet")                             # doctest: +SKIP
        >>> cat = Catalog.open("s3://bucket/catalog.parquet")               # doctest: +SKIP
        >>> livers = cat.filter(lambda df: (df.name == "liver") & ~df["empty"])  # doctest: +SKIP
    """

    def __init__(
        self,
        table: Any,
        *,
        source: str = "",
        storage_options: Mapping[str, Any] | None = None,
        _base: Catalog | None = None,
    ) -> None:
        if not table.schema.equals(arrow_schema(), check_metadata=False):
            raise MaskValidationError(
                "a Catalog holds a table of the catalogue schema "
                "(medmask.catalog.schema.arrow_schema()); open catalogue files with "
                "Catalog.open"
            )
        self.table = table
        self.source = str(source)
        self.storage_options = dict(storage_options) if storage_options else None
        self._base = _base
        self._df: pd.DataFrame | None = None
        self._archives: Archives | None = None
        self._codes: tuple[np.ndarray, list[str]] | None = None
        self.report: BuildResult | None = None

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def open(
        cls, path: str | os.PathLike, *, storage_options: Mapping[str, Any] | None = None
    ) -> Catalog:
        """Open a catalogue file (a local path, memory-mapped, or a URL, in one GET).

        Args:
            path: The ``.parquet`` file.
            storage_options: fsspec options for the catalogue's and the archives' URLs.

        Returns:
            The catalogue.

        Raises:
            FileNotFoundError: No such file.
            CorruptFileError: Not a Parquet file, or not a medmask catalogue.
            UnsupportedFormatError: A newer schema version (upgrade medmask).
        """
        table, _meta = read_table(path, storage_options)
        return cls(table, source=os.fspath(path), storage_options=storage_options)

    @classmethod
    def build(
        cls,
        paths: str | os.PathLike | Sequence[str | os.PathLike],
        *,
        workers: int = 1,
        client: Any = None,
        storage_options: Mapping[str, Any] | None = None,
        progress: bool | Callable[[Iterable], Iterable] | None = None,
        on_error: str = "raise",
    ) -> Catalog:
        """Catalogue every ``.mska``/``.msk`` file under ``paths``.

        Args:
            paths: Files, folders (searched recursively) and URL prefixes
                (``s3://bucket/packed/``).
            workers: Local processes reading the files (``1``: this process). A script
                calling this with ``workers > 1`` needs ``if __name__ == "__main__":``.
            client: A :class:`dask.distributed.Client` to read the files on (each chunk
                of files is one task); ``workers`` is then ignored.
            storage_options: fsspec options for URLs.
            progress: ``True`` for a progress bar (stderr), ``False`` for none, a wrapper
                of the iterable of files as they are read (``tqdm.tqdm``), or ``None``: a
                bar on a terminal for more than 20 files.
            on_error: ``"raise"`` (default) or ``"skip"``: unreadable files are left out
                and listed in ``catalog.report.failed``.

        Returns:
            The catalogue (in memory; :meth:`write` it). ``catalog.report`` says what was
            read.

        Raises:
            FileNotFoundError: A path does not exist.
            MaskValidationError: No file found; a bad ``on_error``.
            CorruptFileError: A damaged file (``on_error="raise"``).
        """
        files = list_files(paths, storage_options)
        result = build_table(
            files,
            workers=workers,
            client=client,
            storage_options=storage_options,
            progress=progress,
            on_error=on_error,
        )
        cat = cls(result.table, storage_options=storage_options)
        cat.report = result
        return cat

    def update(
        self,
        paths: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
        *,
        workers: int = 1,
        client: Any = None,
        progress: bool | Callable[[Iterable], Iterable] | None = None,
        on_error: str = "raise",
    ) -> Catalog:
        """A new catalogue of ``paths`` that re-reads only the archives that changed.

        An archive this catalogue lists is peeked first (a version-2 archive: its commit
        slots, 144 bytes) and read again only when its size, commit generation or index
        checksum differ; new archives are read; archives no longer found are dropped.

        Args:
            paths: What to catalogue (default: the archives this catalogue lists).
            workers: See :meth:`build`.
            client: See :meth:`build`.
            progress: See :meth:`build`.
            on_error: See :meth:`build`.

        Returns:
            The updated catalogue; its ``report`` lists what was read, kept, removed.
        """
        base = self._base or self
        files = list_files(
            paths if paths is not None else self.archive_paths(), self.storage_options
        )
        result = build_table(
            files,
            workers=workers,
            client=client,
            storage_options=self.storage_options,
            progress=progress,
            on_error=on_error,
            previous=base.table,
        )
        cat = Catalog(result.table, source=self.source, storage_options=self.storage_options)
        cat.report = result
        return cat

    def write(
        self, path: str | os.PathLike, *, storage_options: Mapping[str, Any] | None = None
    ) -> None:
        """Write the catalogue to a ``.parquet`` path or URL, whole or not at all.

        Raises:
            MaskValidationError: The name does not end in ``.parquet``.
            OSError: The write failed.
        """
        write_table(self.table, path, storage_options=storage_options or self.storage_options)
        if not self.source:
            self.source = os.fspath(path)

    # -- the rows -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.table.num_rows

    def __repr__(self) -> str:
        where = f" from {self.source}" if self.source else ""
        return f"Catalog({len(self)} masks, {len(self.archive_paths())} archives{where})"

    @property
    def df(self) -> pd.DataFrame:
        """The rows as a :class:`pandas.DataFrame` (made once): the file's columns
        (repeated strings as categoricals, nullable integers as ``Int64``) plus, as in
        :func:`medmask.stats`, ``bbox`` and ``centroid_ras_mm``: one list per row (Arrow
        lists; ``pd.NA`` when empty). :func:`medmask.stats.summarize`,
        :func:`~medmask.stats.lacking` and :func:`~medmask.stats.scheme_coverage` take it."""
        if self._df is None:
            import pandas as pd

            pa = _pa()
            df = self.table.to_pandas()
            nullable = {pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int64Dtype()}.get
            for c in NULLABLE_INTS:
                df[c] = self.table.column(c).to_pandas(types_mapper=nullable)
            df["bbox"] = _list_column(pd, pa, self.table, BBOX_COLUMNS, pa.int32())
            df["centroid_ras_mm"] = _list_column(pd, pa, self.table, CENTROID_COLUMNS, pa.float64())
            self._df = df
        return self._df

    def archive_paths(self) -> list[str]:
        """The archives with at least one row, in order of first appearance."""
        return self._archive_codes()[1]

    def archive_index(self) -> np.ndarray:
        """Each row's archive: ``(rows,)`` int32 positions into :meth:`archive_paths`."""
        return self._archive_codes()[0]

    def _archive_codes(self) -> tuple[np.ndarray, list[str]]:
        if self._codes is None:
            col = self.table.column("path").combine_chunks()
            if col.null_count:
                raise MaskValidationError(f"{self.source or 'catalogue'}: rows without a path")
            idx = col.indices.to_numpy(zero_copy_only=False)
            names = col.dictionary.to_pylist()
            step = np.diff(idx)
            if (
                len(idx)
                and idx[0] == 0
                and idx[-1] == len(names) - 1
                and ((step == 0) | (step == 1)).all()
            ):  # as written: rows grouped by archive, the dictionary in their order
                self._codes = (idx.astype(np.int32, copy=False), names)
                return self._codes
            uniq, first, inverse = np.unique(idx, return_index=True, return_inverse=True)
            rank = np.empty(len(uniq), np.int32)
            rank[np.argsort(first, kind="stable")] = np.arange(len(uniq), dtype=np.int32)
            paths = [names[k] for k in uniq[np.argsort(first, kind="stable")]]
            self._codes = (rank[inverse.reshape(-1)], paths)
        return self._codes

    # -- selecting ------------------------------------------------------------------------------
    def filter(self, predicate: Predicate | Any) -> Catalog:
        """The rows a predicate selects.

        Args:
            predicate: A boolean Series or array over :attr:`df`'s rows, or a function of
                :attr:`df` returning one (``lambda df: (df.name == "liver") & ~df["empty"]``).

        Returns:
            A catalogue of the selected rows, which remembers the whole one (what each
            archive stores and was annotated for).

        Raises:
            MaskValidationError: The predicate does not give one bool per row.
        """
        keep = predicate(self.df) if callable(predicate) else predicate
        mask = np.asarray(keep)
        if mask.dtype != np.bool_ or mask.shape != (len(self),):
            raise MaskValidationError(
                f"a catalogue filter gives one bool per row ({len(self)}), got "
                f"{mask.dtype} of shape {mask.shape}"
            )
        pa = _pa()
        sub = Catalog(
            self.table.filter(pa.array(mask)),
            source=self.source,
            storage_options=self.storage_options,
            _base=self._base or self,
        )
        return sub

    def union(self, *others: Catalog) -> Catalog:
        """This catalogue's rows and the others' (cohorts joined into one training set).

        An archive listed by several is taken once, from the first that lists it.

        Returns:
            The union; its ``source`` names every catalogue joined.
        """
        pa = _pa()
        import pyarrow.compute as pc

        cats = [self, *others]
        tables, seen = [], set()
        for cat in cats:
            paths = set(cat.archive_paths())
            fresh = paths - seen
            t = cat.table
            if fresh != paths:
                col = t.column("path").cast(pa.string())
                t = t.filter(pc.is_in(col, pa.array(sorted(fresh), type=pa.string())))
            tables.append(t)
            seen |= paths
        bases = [c._base for c in cats]
        source = " + ".join(c.source or "(built)" for c in cats)
        base = (
            None if all(b is None for b in bases) else Catalog.union(*[c._base or c for c in cats])
        )
        return Catalog(
            pa.concat_tables(tables).unify_dictionaries(),
            source=source,
            storage_options=self.storage_options,
            _base=base,
        )

    __or__ = union

    # -- archives -------------------------------------------------------------------------------
    def archives(self) -> Archives:
        """What the catalogue says about each archive with a row here (in order): its
        :class:`ArchiveRef`, case, attributes and stored names (from the whole catalogue
        this one was filtered from)."""
        if self._archives is None:
            self._archives = _archives_of(self)
        return self._archives

    def refs(self) -> list[ArchiveRef]:
        """One :class:`ArchiveRef` per archive (what loaders open and check)."""
        return self.archives().refs

    # -- schemes ---------------------------------------------------------------------------------
    def case_labels(
        self, scheme: LabelScheme, *, source: str | None = None, include_partial: bool = False
    ) -> list[CaseLabels]:
        """Each archive mapped onto ``scheme`` (see :func:`medmask.schemes.case_labels`):
        its availability vector and the label table that paints it. Cases sharing a set of
        names are mapped once."""
        arch = self.archives()
        cache: dict[tuple, CaseLabels] = {}
        out = []
        for k, attrs in enumerate(arch.attrs):
            listed = attrs.get("annotated")
            key = (arch.key_of(k), None if listed is None else tuple(listed))
            if key not in cache:
                cache[key] = case_labels(
                    scheme, arch.names_of(k), attrs, source=source, include_partial=include_partial
                )
            out.append(cache[key])
        return out

    def availability(self, scheme: LabelScheme, **kw: Any) -> np.ndarray:
        """``(archives, classes)`` bool: whether each case was annotated for each class of
        ``scheme`` (the ``label_available`` loaders return); keywords as for
        :meth:`case_labels`."""
        labels = self.case_labels(scheme, **kw)
        return np.array([cl.available for cl in labels], dtype=bool).reshape(
            len(labels), len(scheme)
        )

    def coverage(self, scheme: LabelScheme, **kw: Any) -> pd.DataFrame:
        """Each case's coverage under ``scheme`` (:func:`medmask.stats.scheme_coverage`)."""
        from ..stats import scheme_coverage

        return scheme_coverage((self._base or self).df_of(self.archive_paths()), scheme, **kw)

    def df_of(self, paths: Iterable[str]) -> pd.DataFrame:
        """The rows of the archives ``paths`` (every row of each, in order)."""
        df = self.df
        return df[df["path"].isin(list(paths))]

    # -- loaders -------------------------------------------------------------------------------
    def datalist(
        self,
        key: str = "label",
        *,
        scheme: LabelScheme | None = None,
        available_key: str = "label_available",
        source: str | None = None,
    ) -> list[dict[str, Any]]:
        """One dict per archive for MONAI datasets: ``{key: ArchiveRef, "case": case}``,
        and with a scheme ``{available_key: bool array}`` (one per class, scheme order).
        ``LoadMaskd`` opens each :class:`ArchiveRef` with the staleness check.

        Args:
            key: The key of the archive (what ``LoadMaskd(keys=key)`` loads).
            scheme: The target scheme; adds each case's availability vector.
            available_key: The key of that vector.
            source: See :meth:`case_labels`.
        """
        arch = self.archives()
        out = [{key: ref, "case": case} for ref, case in zip(arch.refs, arch.cases, strict=True)]
        if scheme is not None:
            avail = self.availability(scheme, source=source)
            for d, row in zip(out, avail, strict=True):
                d[available_key] = row.copy()
        return out


def _attrs(text: object) -> dict:
    return json.loads(text) if isinstance(text, str) and text else {}


def _archives_of(cat: Catalog) -> Archives:
    """One entry per archive of ``cat`` (names and attributes from its base)."""
    base = cat._base or cat
    t = base.table
    pa = _pa()
    row_archive, base_paths = base._archive_codes()
    order = np.argsort(row_archive, kind="stable")
    starts = np.searchsorted(row_archive[order], np.arange(len(base_paths) + 1))
    name = t.column("name").combine_chunks()
    codes = name.indices.to_numpy(zero_copy_only=False)[order]
    at = {p: k for k, p in enumerate(base_paths)}
    first = order[starts[:-1]]
    pick = lambda c: t.column(c).take(pa.array(first)).to_pylist()  # noqa: E731
    cases, sizes, gens = pick("case"), pick("archive_size"), pick("archive_generation")
    crcs, attrs, spaces = pick("archive_index_crc"), pick("archive_attrs"), pick("archive_space")
    refs, out_cases, out_attrs, spans, out_spaces = [], [], [], [], []
    parsed: dict[str, dict] = {}
    for p in cat.archive_paths():
        k = at[p]
        refs.append(ArchiveRef(p, int(sizes[k]), gens[k], crcs[k], cat.source))
        out_cases.append(cases[k])
        text = attrs[k]
        if text not in parsed:
            parsed[text] = _attrs(text)
        out_attrs.append(parsed[text])
        spans.append((int(starts[k]), int(starts[k + 1])))
        out_spaces.append(spaces[k])
    return Archives(
        refs, out_cases, out_attrs, codes, spans, name.dictionary.to_pylist(), order, out_spaces
    )
