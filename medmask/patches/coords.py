"""nnU-Net-style foreground coordinates: a sample of each mask's voxels, kept beside an archive.

nnU-Net v2 stores, per case, up to ``max(min(10,000, n), ceil(1 % of n))`` voxel coordinates
of each class (``n`` its voxels) and draws foreground centres from them. Here the same rule
gives an optional file beside a local archive, ``<name>.fgcoords.npz`` (one ``int16`` or
``int32`` ``(k, 3)`` array of ``(z, y, x)`` per mask, compressed, with the archive's commit
generation and each mask's voxel count and blob size, so that a file left over from an
earlier version of the archive is noticed and not used). Without the file, the coordinates
are computed on first use (one decode per mask and process).

The exact alternative (:class:`~medmask.patches.MaskVoxels`, the default) needs no file at
all; ``benchmarks/bench_patches.py`` measures both and the size of the files.
"""

from __future__ import annotations

import io
import json
import math
import os
import warnings
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ..errors import CorruptFileError
from ..io.atomic import write_atomic
from ..io.names import is_url
from ..storage import MaskArchive
from .voxels import MaskVoxels

__all__ = [
    "coords_count",
    "coords_path",
    "save_foreground_coords",
    "load_foreground_coords",
    "coords_for_case",
    "StaleCoordsWarning",
]

SUFFIX = ".fgcoords.npz"


class StaleCoordsWarning(UserWarning):
    """A foreground-coordinates file does not match its archive (written for an earlier
    version of it); the coordinates are computed again instead."""


def coords_count(voxels: int) -> int:
    """nnU-Net's number of sampled coordinates for a class of ``voxels`` voxels:
    ``max(min(10,000, n), ceil(n / 100))``, and never more than ``n``."""
    n = int(voxels)
    return min(n, max(min(10_000, n), math.ceil(n / 100)))


def coords_path(archive: str | os.PathLike) -> Path:
    """The coordinates file of a local archive: ``case.mska`` -> ``case.fgcoords.npz``."""
    p = Path(archive)
    stem = p.name[: -len(".mska")] if p.name.lower().endswith(".mska") else p.name
    return p.with_name(stem + SUFFIX)


def _seed(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode("utf-8")))


def _stamp(ar: MaskArchive, name: str) -> list:
    info = ar.info(name)
    return [int(info.voxels or 0), int(info.nbytes)]


def save_foreground_coords(
    archive: str | os.PathLike,
    out: str | os.PathLike | None = None,
    names: Iterable[str] | None = None,
) -> Path:
    """Write nnU-Net-style foreground coordinates of an archive's masks beside it.

    Args:
        archive: A local ``.mska``.
        out: The file to write (default :func:`coords_path` of ``archive``).
        names: Only these masks (default every non-empty mask).

    Returns:
        The path written (atomically).

    Raises:
        FileNotFoundError: No such archive.
        CorruptFileError: A mask's blob is damaged (names file and mask).
    """
    out = coords_path(archive) if out is None else Path(out)
    arrays: dict[str, np.ndarray] = {}
    with MaskArchive(archive) as ar:
        wanted = ar.all_names() if names is None else list(names)
        dtype = np.int16 if max(ar.space.shape) < 2**15 else np.int32
        meta: dict = {"generation": ar.generation, "masks": {}}
        for k, name in enumerate(wanted):
            crop, box = ar.read_cropped(name)
            if box is None:
                continue
            mv = MaskVoxels(crop, box, name)
            arrays[f"m{k}"] = mv.sample(_seed(name), coords_count(mv.total)).astype(dtype)
            meta["masks"][name] = [f"m{k}", *_stamp(ar, name)]
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return write_atomic(out, lambda fh: fh.write(buf.getvalue()))


def load_foreground_coords(
    path: str | os.PathLike, ar: MaskArchive, name: str
) -> np.ndarray | None:
    """Mask ``name``'s coordinates from a coordinates file, checked against ``ar``.

    Returns:
        A ``(k, 3)`` array of ``(z, y, x)``, or ``None`` when the file does not list the mask
        or was written for another version of the archive (then with a
        :class:`StaleCoordsWarning`).

    Raises:
        CorruptFileError: The file is not a readable coordinates file.
    """
    try:
        with np.load(path) as npz:
            meta = json.loads(bytes(npz["meta"]).decode("utf-8"))
            entry = meta["masks"].get(name)
            if entry is None:
                return None
            if meta.get("generation") != ar.generation or entry[1:] != _stamp(ar, name):
                warnings.warn(
                    f"{path}: written for another version of {ar.path} (mask {name!r}); "
                    "its coordinates are computed again (rewrite the file with "
                    "medmask.patches.save_foreground_coords)",
                    StaleCoordsWarning,
                    stacklevel=3,
                )
                return None
            return np.asarray(npz[entry[0]])
    except (OSError, ValueError, KeyError, zlib.error) as exc:
        raise CorruptFileError(f"not a readable coordinates file ({exc})", path=path) from exc


def coords_for_case(ar: MaskArchive, name: str, voxels: Callable[[], MaskVoxels]) -> np.ndarray:
    """Mask ``name``'s sampled coordinates: from the file beside a local archive when it is
    there and current, else computed from ``voxels()`` (the decoded mask) with nnU-Net's rule.

    Returns:
        A ``(k, 3)`` array of ``(z, y, x)`` voxels of the mask.
    """
    if not is_url(ar.path):
        side = coords_path(ar.path)
        if side.exists():
            got = load_foreground_coords(side, ar, name)
            if got is not None and len(got):
                return got
    mv = voxels()
    return mv.sample(_seed(name), coords_count(mv.total))
