"""Convert compressed NIfTI images once, so that training reads them by window.

A ``.nii.gz`` cannot be read by window (gzip has no random access): every patch would
inflate the whole image. Two standard layouts can, and both stay ordinary files:

* ``nii``: the same NIfTI, uncompressed (the gzip stream unpacked, header and data byte for
  byte); read through nibabel's memory map. About twice the bytes of the ``.nii.gz``.
* ``b2nd``: a blosc2 ``.b2nd`` of ``(C, z, y, x)`` with the chunk and block shapes nnU-Net v2
  chooses for the patch size (:func:`blosc2_chunks`), LZ4HC at level 5 as nnU-Net writes its
  preprocessed cases, the image's dtype kept (an ``int16`` CT stays ``int16``) and its RAS
  affine in the file's metadata (``affine_ras``). nnU-Net's loader reads these files too.

``medmask convert-images`` is the command line of :func:`convert_images`.
"""

from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MaskValidationError
from ..geometry import effective_affine
from ..io.atomic import atomic_temp, write_atomic
from .images import AFFINE_KEY

__all__ = ["IMAGE_LAYOUTS", "blosc2_chunks", "convert_image", "convert_images", "Converted"]

#: The layouts :func:`convert_image` writes, by output suffix.
IMAGE_LAYOUTS = {"nii": ".nii", "b2nd": ".b2nd"}

BLOCK_BYTES = 128 * 1024  # nnU-Net's caps on a block and a chunk
CHUNK_BYTES = 6 * 1024**2
CHUNK_PER_PATCH = 1.5  # a chunk spans at most 1.5 patches along each axis


def _pow2_at_least(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


def _pow2_below(n: int) -> int:
    return 1 << max((int(n) - 1).bit_length() - 1, 0)


def blosc2_chunks(
    shape: Sequence[int], patch: Sequence[int], itemsize: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Block and chunk shapes for a ``(C, z, y, x)`` array read by ``patch``-sized windows,
    by nnU-Net v2's rule (``comp_blosc2_params``), so that its loader and ours read the
    file as efficiently as nnU-Net's own.

    The rule: a block is the patch rounded up to powers of two (within the image), halved
    along its most oversized axis until it holds at most 128 KiB; a chunk grows from the
    block, one block step at a time along its least covered axis, up to 1.5 patches (and
    the image) per axis and 6 MiB. Channels are one per block and chunk.

    Args:
        shape: ``(C, z, y, x)``.
        patch: The patch ``(z, y, x)``.
        itemsize: Bytes per voxel.

    Returns:
        ``(blocks, chunks)``, each ``(1, z, y, x)``.

    Raises:
        MaskValidationError: Sizes that are not positive.
    """
    img = [int(s) for s in shape[1:]]
    pat = [int(p) for p in patch]
    if len(shape) != 4 or len(pat) != 3 or min(*img, *pat, itemsize) <= 0:
        raise MaskValidationError(f"bad image shape {tuple(shape)} or patch {tuple(patch)}")
    limit = [max(1, min(i, int(CHUNK_PER_PATCH * p))) for i, p in zip(img, pat)]

    def size(box: list[int]) -> int:
        return int(np.prod(box)) * itemsize

    block = [min(_pow2_at_least(p), i) for p, i in zip(pat, img)]
    while size(block) > min(BLOCK_BYTES, CHUNK_BYTES):
        axis = max((a for a in range(3) if block[a] > 1), key=lambda a: (block[a] / limit[a], a))
        block[axis] = _pow2_below(block[axis])
    chunk = list(block)
    while True:
        options = []
        for a in range(3):
            if pat[a] == 1 or chunk[a] >= min(img[a], limit[a]):
                continue
            grown = list(chunk)
            grown[a] = min(chunk[a] + block[a], img[a], limit[a])
            if size(grown) <= CHUNK_BYTES:
                options.append(((chunk[a] / limit[a], -img[a], a, -size(grown)), grown))
        if not options:
            break
        chunk = min(options, key=lambda o: o[0])[1]
    return (1, *block), (1, *chunk)


@dataclass(frozen=True)
class Converted:
    """One image converted: ``src``, ``dst``, the bytes written, and whether it was skipped
    (``dst`` existed and was newer)."""

    src: Path
    dst: Path
    nbytes: int
    skipped: bool = False


def _gunzip(src: Path, dst: Path) -> None:
    with open(src, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
    with atomic_temp(dst) as (fh, _tmp), gzip.open(src) if gz else open(src, "rb") as inp:
        shutil.copyfileobj(inp, fh, 1 << 22)


def _to_b2nd(src: Path, dst: Path, patch: Sequence[int], dtype: Any) -> None:
    import blosc2
    import nibabel as nib

    img = nib.load(str(src))
    data = np.asanyarray(img.dataobj)
    if data.ndim not in (3, 4):
        raise MaskValidationError(f"a 3-D or 4-D image is expected, got {data.shape}", path=src)
    if dtype is not None:
        data = data.astype(dtype)
    czyx = np.ascontiguousarray((data[..., None] if data.ndim == 3 else data).transpose(3, 2, 1, 0))
    blocks, chunks = blosc2_chunks(czyx.shape, patch, czyx.itemsize)
    cparams = {
        "codec": blosc2.Codec.LZ4HC,
        "clevel": 5,
        "filters": [blosc2.Filter.SHUFFLE],
        "nthreads": min(4, os.cpu_count() or 1),
    }
    arr = blosc2.asarray(czyx, chunks=chunks, blocks=blocks, cparams=cparams)
    arr.schunk.vlmeta[AFFINE_KEY] = effective_affine(img).tolist()
    frame = arr.to_cframe()
    write_atomic(dst, lambda fh: fh.write(frame))


def convert_image(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    patch: Sequence[int] = (128, 128, 128),
    dtype: Any = None,
) -> Converted:
    """Convert one NIfTI image (``.nii.gz`` or ``.nii``) to the layout ``dst``'s name says.

    Args:
        src: The image.
        dst: ``*.nii`` (uncompressed NIfTI, the same bytes) or ``*.b2nd`` (blosc2, nnU-Net's
            chunking for ``patch``). Written atomically.
        patch: The training patch ``(z, y, x)`` the chunks are chosen for (``.b2nd``).
        dtype: The ``.b2nd``'s dtype (default: the image's, after NIfTI scaling).

    Returns:
        What was written.

    Raises:
        MaskValidationError: ``dst`` names no layout, or the image is not 3-D/4-D.
        FileNotFoundError: No such image.
    """
    src, dst = Path(src), Path(dst)
    kind = next((k for k, suf in IMAGE_LAYOUTS.items() if dst.name.lower().endswith(suf)), None)
    if kind is None:
        raise MaskValidationError(
            f"the output's name must end with {' or '.join(IMAGE_LAYOUTS.values())} (the "
            "layout it is written in)",
            path=dst,
        )
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no such image")
    dst.parent.mkdir(parents=True, exist_ok=True)
    if kind == "nii":
        _gunzip(src, dst)
    else:
        _to_b2nd(src, dst, patch, dtype)
    return Converted(src, dst, dst.stat().st_size)


def output_name(src: Path, to: str) -> str:
    """``ct.nii.gz`` -> ``ct.nii`` / ``ct.b2nd``."""
    low = src.name.lower()
    stem = src.name[: -len(".nii.gz")] if low.endswith(".nii.gz") else src.name.rsplit(".", 1)[0]
    return stem + IMAGE_LAYOUTS[to]


def convert_images(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    to: str,
    pattern: str = "*.nii.gz",
    patch: Sequence[int] = (128, 128, 128),
    dtype: Any = None,
    overwrite: bool = False,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> list[Converted]:
    """Convert every image of a folder matching ``pattern``, keeping relative paths.

    ``SRC/case1/ct.nii.gz`` becomes ``DST/case1/ct.nii`` (``to="nii"``) or
    ``DST/case1/ct.b2nd`` (``to="b2nd"``). An output newer than its image is kept (a rerun
    resumes an interrupted conversion) unless ``overwrite``.

    Args:
        src: A folder (or one image file).
        dst: The output folder (created).
        to: ``"nii"`` or ``"b2nd"``.
        pattern: Which files, a glob relative to ``src`` (``"*/ct.nii.gz"`` for
            TotalSegmentator's layout; ``"**/*.nii.gz"``: every one, at any depth).
        patch: The training patch ``(z, y, x)`` (``.b2nd`` chunking).
        dtype: The ``.b2nd``'s dtype (default the image's).
        overwrite: Convert again even when the output is newer than the image.
        progress: Wraps the iteration over files (a progress bar).

    Returns:
        One :class:`Converted` per image, sorted by path.

    Raises:
        MaskValidationError: An unknown ``to``, or no image matches.
        FileNotFoundError: ``src`` does not exist.
    """
    if to not in IMAGE_LAYOUTS:
        raise MaskValidationError(f"to must be one of {sorted(IMAGE_LAYOUTS)}, got {to!r}")
    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such folder or file")
    files = [src] if src.is_file() else sorted(p for p in src.glob(pattern) if p.is_file())
    if not files:
        raise MaskValidationError(f"no image matches {pattern!r}", path=src)
    out = []
    for f in (progress or (lambda it: it))(files):
        rel = f.parent.relative_to(src) if src.is_dir() else Path()
        target = dst / rel / output_name(f, to)
        if not overwrite and target.exists() and target.stat().st_mtime >= f.stat().st_mtime:
            out.append(Converted(f, target, target.stat().st_size, skipped=True))
            continue
        out.append(convert_image(f, target, patch=patch, dtype=dtype))
    return out
