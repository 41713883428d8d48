"""Look inside medmask files without changing them: what they are, what they hold, whether
they are sound. The library behind ``medmask ls``, ``info`` and ``verify``.

Example::

    from medmask.inspect import file_info, list_masks, verify_file, expand_paths

    for f in expand_paths(["packed/"]):
        print(file_info(f)["space"]["spacing"], verify_file(f)["ok"])

Every function takes local paths or URLs (``s3://...``, with ``storage_options`` for
fsspec) and returns plain JSON-serialisable values.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CorruptFileError, UnsupportedFormatError
from .io.names import is_url
from .spaces import Space, describe_space
from .storage import MaskArchive, MaskFile

__all__ = [
    "MASK_SUFFIXES",
    "expand_paths",
    "sniff_file",
    "is_archive",
    "space_fields",
    "file_info",
    "list_masks",
    "verify_file",
]

#: File name endings of medmask files (folders are searched for these).
MASK_SUFFIXES = (".mska", ".msk")

Target = str | os.PathLike


def _kw(storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    return {} if storage_options is None else {"storage_options": dict(storage_options)}


def _target(path: Target) -> str | Path:
    return path if is_url(path) else Path(path)


def expand_paths(
    paths: Iterable[Target], *, storage_options: Mapping[str, Any] | None = None
) -> list[str]:
    """Files and folders -> the medmask files they name, in the order given.

    A folder (or a URL ending in ``/``) stands for the ``.msk``/``.mska`` files below
    it, searched recursively and sorted; a file is kept whatever its name.

    Args:
        paths: Local paths or URLs.
        storage_options: fsspec options for URLs.

    Returns:
        Paths and URLs as strings.

    Raises:
        FileNotFoundError: A local path does not exist (nothing else is listed then).
    """
    out: list[str] = []
    for raw in paths:
        if is_url(raw):
            if str(raw).endswith("/"):
                from .io.remote import list_files

                out.extend(list_files(str(raw), MASK_SUFFIXES, storage_options=storage_options))
            else:
                out.append(str(raw))
            continue
        p = Path(raw)
        if p.is_dir():
            out.extend(
                str(f)
                for f in sorted(p.rglob("*"))
                if f.name.lower().endswith(MASK_SUFFIXES) and f.is_file()
            )
        elif p.exists():
            out.append(str(p))
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return out


def _source_size(path: Target, storage_options: Mapping[str, Any] | None) -> int:
    if not is_url(path):
        return os.stat(path).st_size
    from .io import open_source

    with open_source(path, **_kw(storage_options)) as src:
        return src.size()


def sniff_file(
    path: Target, *, storage_options: Mapping[str, Any] | None = None
) -> tuple[str, int, int]:
    """What a file is, by its first bytes (not its name), read by :func:`medmask.format.sniff`.

    Args:
        path: A local path or URL.
        storage_options: fsspec options for a URL.

    Returns:
        ``(kind, major, minor)``: kind ``"msk"`` or ``"mska"`` and the format version.

    Raises:
        CorruptFileError: Too short, or not a medmask file.
        UnsupportedFormatError: A format version this release does not read.
        FileNotFoundError: No such file.
        IsADirectoryError: A folder.
    """
    from .format import sniff
    from .io import open_source

    if not is_url(path) and Path(path).is_dir():
        raise IsADirectoryError(f"{path}: is a folder, not a .msk/.mska file")
    with open_source(path, **_kw(storage_options)) as src:
        kind, major = sniff(src)
        minor = src.read(5, 1, field="header")[0]  # the header sniff just read (cached remotely)
    return kind, major, minor


def is_archive(path: Target, *, storage_options: Mapping[str, Any] | None = None) -> bool:
    """Whether ``path`` is a medmask archive (``.mska``), by its first bytes (not its name).

    Args:
        path: A local path or URL.
        storage_options: fsspec options for a URL.

    Returns:
        ``True`` for an archive; ``False`` for a ``.msk`` or a file that is not a medmask
        file at all (too short, other magic).

    Raises:
        UnsupportedFormatError: A medmask file of a format version this release does not
            read (neither an archive nor a single mask can be opened).
        FileNotFoundError: No such file.
        IsADirectoryError: A folder.
    """
    try:
        return sniff_file(path, storage_options=storage_options)[0] == "mska"
    except UnsupportedFormatError:
        raise
    except CorruptFileError:
        return False


def _floats(values: Iterable[float], nd: int = 6) -> list[float]:
    return [round(float(v), nd) for v in values]


def space_fields(space: Space) -> dict[str, Any]:
    """A ``(z, y, x)`` medmask space as structured, JSON-ready fields, in both conventions.

    NIfTI's, as nibabel and MONAI report a file (axes ``(x, y, z)``, world RAS):
    ``shape``, ``spacing``, ``origin`` (RAS mm of voxel ``(0, 0, 0)``: the affine's last
    column), ``direction`` (3x3; column ``j`` is the RAS unit vector of voxel axis ``j``,
    i.e. the affine's columns divided by the spacing) and ``affine_ras`` (4x4).

    medmask's own (axes ``(z, y, x)``, world LPS as in ITK/DICOM): ``shape_zyx``,
    ``spacing_zyx``, ``origin_lps`` and ``axes_zyx_lps`` (the LPS unit vector of each of
    the axes z, y, x).

    Args:
        space: The ``(z, y, x)`` space.

    Returns:
        The dict described above.
    """
    from .geometry import space_to_affine

    affine = space_to_affine(space)
    spacing_xyz = [float(v) for v in space.spacing[::-1]]
    direction = affine[:3, :3] / np.asarray(spacing_xyz)[None, :]
    return {
        "shape": [int(s) for s in space.shape[::-1]],
        "spacing": _floats(spacing_xyz),
        "origin": _floats(affine[:3, 3]),
        "direction": [_floats(row) for row in direction],
        "affine_ras": [_floats(row) for row in affine],
        "shape_zyx": [int(s) for s in space.shape],
        "spacing_zyx": _floats(space.spacing),
        "origin_lps": _floats(space.origin),
        "axes_zyx_lps": [
            _floats(space.x_orientation),
            _floats(space.y_orientation),
            _floats(space.z_orientation),
        ],
    }


def file_info(path: Target, *, storage_options: Mapping[str, Any] | None = None) -> dict:
    """Kind, format version, codec, space and sizes of a medmask file (no mask is decoded,
    except the one of a ``.msk``).

    Args:
        path: A ``.msk`` or ``.mska`` (told by its bytes), local or a URL.
        storage_options: fsspec options for a URL.

    Returns:
        A JSON-serialisable dict: ``file``, ``kind`` (``"msk"``/``"mska"``), ``version``
        (major), ``minor_version``, ``bytes``, ``masks``, ``codec``, ``space`` (see
        :func:`space_fields`; ``None`` for an archive without a mask yet), ``space_text``
        (one line), and for archives ``empty_masks`` (``None`` for version 1, which does
        not record it), ``mask_bytes``, ``overhead_bytes``, ``generation`` and
        ``index_segments`` (version 2, else ``None``), ``full_volume_bytes_uint8``; for a
        ``.msk`` ``labels``, ``dtype``, ``bbox`` and ``voxels``.

    Raises:
        CorruptFileError: The file is damaged or not a medmask file.
        UnsupportedFormatError: A format version this release does not read.
        FileNotFoundError: No such file.
    """
    kind, major, minor = sniff_file(path, storage_options=storage_options)
    size = _source_size(path, storage_options)
    out: dict[str, Any] = {
        "file": str(path),
        "kind": kind,
        "version": int(major),
        "minor_version": int(minor) if major >= 2 else 0,
        "bytes": int(size),
    }
    if kind == "mska":
        with MaskArchive(_target(path), **_kw(storage_options)) as ar:
            space = ar.space
            infos = ar.infos() if ar.version >= 2 else None
            n = len(ar)
            out.update(
                masks=n,
                codec=",".join(ar.codec_names),
                space=None if space is None else space_fields(space),
                space_text=None if space is None else describe_space(space),
                empty_masks=None if infos is None else sum(1 for i in infos if i.bbox is None),
                mask_bytes=int(ar.mask_bytes),
                overhead_bytes=int(size) - int(ar.mask_bytes),
                generation=ar.generation,
                index_segments=ar.index_segments,
                full_volume_bytes_uint8=(0 if space is None else int(np.prod(space.shape))) * n,
            )
        return out
    info = MaskFile(_target(path), **_kw(storage_options)).info()
    space = _msk_space(path, storage_options)
    out.update(
        masks=1,
        codec="zstd" if major == 1 else "bitzstd",
        space=space_fields(space),
        space_text=describe_space(space),
        labels=info.mapping,
        dtype=info.dtype,
        bbox=None if info.bbox is None else [int(v) for v in info.bbox],
        voxels=None if info.voxels is None else int(info.voxels),
    )
    return out


def _msk_space(path: Target, storage_options: Mapping[str, Any] | None) -> Space:
    return MaskFile(_target(path), **_kw(storage_options)).read_cropped()[3]


def list_masks(path: Target, *, storage_options: Mapping[str, Any] | None = None) -> list[dict]:
    """One row per mask of an archive (per label of a ``.msk``), from the index where it can.

    Version-2 archives answer from their index alone; version-1 archives and ``.msk``
    files are decoded for the voxel counts and boxes.

    Args:
        path: A ``.msk`` or ``.mska``, local or a URL.
        storage_options: fsspec options for a URL.

    Returns:
        ``[{"file", "name", "labels", "voxels", "bbox", "bytes", "attrs"}]``: ``labels``
        the mask's ``{name: label}``, ``bbox`` half-open ``[z0, z1, y0, y1, x0, x1]`` in
        ``(z, y, x)`` voxel indices (``None`` when empty), ``bytes`` what the mask takes
        in the file (for a ``.msk``: the file's size), ``attrs`` its stored attributes.

    Raises:
        CorruptFileError: The file is damaged or not a medmask file.
        FileNotFoundError: No such file.
    """
    kind, _major, _minor = sniff_file(path, storage_options=storage_options)
    rows: list[dict] = []
    if kind == "msk":
        size = _source_size(path, storage_options)
        crop, bbox, mapping, _space = MaskFile(_target(path), **_kw(storage_options)).read_cropped()
        attrs = MaskFile(_target(path), **_kw(storage_options)).info().attrs
        for name, label in mapping.items():
            hit = crop == label
            voxels = int(np.count_nonzero(hit))
            box = None
            if voxels and bbox is not None:
                idx = [np.flatnonzero(hit.any(axis=ax)) for ax in ((1, 2), (0, 2), (0, 1))]
                box = []
                for k, ix in enumerate(idx):
                    box += [int(bbox[2 * k] + ix[0]), int(bbox[2 * k] + ix[-1] + 1)]
            rows.append(
                {
                    "file": str(path),
                    "name": name,
                    "labels": {name: int(label)},
                    "voxels": voxels,
                    "bbox": box,
                    "bytes": int(size),
                    "attrs": dict(attrs),
                }
            )
        return rows
    with MaskArchive(_target(path), **_kw(storage_options)) as ar:
        for info in ar.infos():
            voxels, bbox = info.voxels, info.bbox
            if voxels is None:  # version 1 does not record them: decode
                crop, bbox = ar.read_cropped(info.index)
                voxels = int(np.count_nonzero(crop))
            rows.append(
                {
                    "file": str(path),
                    "name": info.name,
                    "labels": dict(info.mapping),
                    "voxels": int(voxels),
                    "bbox": None if bbox is None else [int(v) for v in bbox],
                    "bytes": int(info.nbytes),
                    "attrs": dict(info.attrs),
                }
            )
    return rows


def verify_file(path: Target, *, storage_options: Mapping[str, Any] | None = None) -> dict:
    """Open ``path``, check every checksum and decode every mask; never raises for a bad file.

    Every check of :func:`medmask.format.verify_all` runs, so a damaged archive reports each
    bad mask, not only the first.

    Args:
        path: A ``.msk`` or ``.mska``, local or a URL.
        storage_options: fsspec options for a URL.

    Returns:
        ``{"file", "ok", "version", "masks", "checksums", "error", "problems"}``:
        ``checksums`` is False for version-1 files, which carry none (their masks are decoded
        only); ``problems`` lists every problem as one line naming the file (and the mask or
        field where known); ``error`` is the first of them, or ``None``.
    """
    from .format import verify_all

    problems = [str(p) for p in verify_all(path, storage_options=storage_options)]
    out: dict = {
        "file": str(path),
        "ok": not problems,
        "version": None,
        "masks": None,
        "checksums": None,
        "error": problems[0] if problems else None,
        "problems": problems,
    }
    if problems:
        return out
    try:
        kind, major, _minor = sniff_file(path, storage_options=storage_options)
        if kind == "mska":
            with MaskArchive(_target(path), **_kw(storage_options)) as ar:
                n = len(ar)
        else:
            n = 1
    except Exception as exc:  # noqa: BLE001 - the file changed since it was checked
        return {**out, "ok": False, "error": f"{path}: {exc}", "problems": [f"{path}: {exc}"]}
    out.update(version=int(major), masks=n, checksums=major >= 2)
    return out
