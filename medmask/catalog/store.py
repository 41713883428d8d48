"""Reading and writing catalogue files: local paths atomically, URLs whole (one GET to read,
one upload to write)."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from typing import Any

from ..errors import CorruptFileError, MaskValidationError
from ..io.names import expect_name
from ..io.target import Target
from .schema import _pa, check_metadata, schema_metadata

__all__ = ["read_table", "write_table", "is_url"]


def is_url(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a URL rather than a local path."""
    return Target.of(path).is_url


def _parquet() -> Any:
    _pa()  # the message of a missing pyarrow
    import pyarrow.parquet as pq

    return pq


def read_table(path: str | os.PathLike | Target, storage_options: Mapping | None = None) -> Any:
    """The table of a catalogue file, its metadata checked.

    A local file is memory-mapped; a URL is fetched whole in one GET.

    Args:
        path: The catalogue's path or URL.
        storage_options: fsspec options for a URL.

    Returns:
        ``(table, meta)``: a :class:`pyarrow.Table` and the parsed catalogue metadata.

    Raises:
        FileNotFoundError: No such file or object.
        CorruptFileError: Not a Parquet file, or not a medmask catalogue.
        UnsupportedFormatError: A catalogue of a newer schema version.
        RemoteReadError: The object could not be read (after the retries).
    """
    pq = _parquet()
    pa = _pa()
    target = Target.of(path, storage_options)
    if target.is_url:
        from ..io.remote import read_bytes

        raw = read_bytes(target.path, storage_options=target.storage_options, one_request=True)
        data: Any = pa.BufferReader(raw)
    else:
        if not os.path.isfile(target.path):
            if os.path.isdir(target.path):
                raise MaskValidationError(f"{target.path}: a folder, not a catalogue file")
            raise FileNotFoundError(f"{target.path}: no such catalogue file")
        data = pa.memory_map(target.path)
    try:
        pf = pq.ParquetFile(data)
    except (pa.ArrowInvalid, OSError) as exc:
        raise CorruptFileError(
            f"not a Parquet file ({str(exc).splitlines()[0][:120]}); a catalogue is the "
            "Parquet file 'medmask catalog' writes",
            path=target.path,
        ) from None
    meta = check_metadata(pf.schema_arrow.metadata, target.path)
    return pf.read(), meta


def write_table(
    table: Any,
    path: str | os.PathLike | Target,
    *,
    storage_options: Mapping | None = None,
    meta: Mapping[str, Any] | None = None,
) -> None:
    """Write a catalogue table to ``path``: whole or not at all.

    Args:
        table: The catalogue rows (:func:`~medmask.catalog.schema.arrow_schema`).
        path: A ``.parquet`` path or URL.
        storage_options: fsspec options for a URL.
        meta: Extra fields of the catalogue metadata.

    Raises:
        MaskValidationError: ``path`` does not end in ``.parquet``.
        OSError: The write failed (nothing was published).
    """
    pq = _parquet()
    target = Target.of(path, storage_options)
    expect_name(target.path, "parquet", what="catalogue")
    table = table.unify_dictionaries().combine_chunks()
    # the paths' dictionary in the order of the rows' archives: readers then take each
    # row's archive from the indices as they are (Catalog.archive_index)
    import pyarrow.compute as pc

    k = table.column_names.index("path")
    path = pc.dictionary_encode(table.column(k).cast(_pa().string()))
    table = table.set_column(k, table.field(k), path)
    table = table.replace_schema_metadata(schema_metadata(**dict(meta or {})))
    buf = io.BytesIO()
    pq.write_table(
        table,
        buf,
        compression="zstd",
        row_group_size=max(1, table.num_rows),
        write_statistics=False,
    )
    if target.is_url:
        with target.writing() as local:
            local.write_bytes(buf.getvalue())
        return
    from ..io.atomic import write_atomic

    os.makedirs(os.path.dirname(os.path.abspath(target.path)), exist_ok=True)
    write_atomic(target.path, lambda fh: fh.write(buf.getvalue()))
