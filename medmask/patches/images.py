"""Images read by window, with the libraries people already use: no medmask image format.

=================================  ===========================================================
file                               how a window is read
=================================  ===========================================================
uncompressed NIfTI (``.nii``)      nibabel's memory map: only the window's bytes are touched
nnU-Net's blosc2 (``.b2nd``)       python-blosc2, memory-mapped: only the chunks it meets
zarr / OME-Zarr                    zarr: only the chunks it meets (level 0 of a multiscale)
compressed NIfTI (``.nii.gz``)     read whole once (gzip cannot seek), kept in a per-process
                                   cache bounded in bytes, with a warning saying how to convert
=================================  ===========================================================

Every source knows its grid ``(z, y, x)``, its channels, its dtype and, where the file records
it, its space (NIfTI: the affine; ``.b2nd`` written by ``medmask convert-images``: the affine
in its metadata). A source holds paths and header facts only; each process opens the file
itself on its first read (after a fork or in a spawned worker), so sources pickle and travel
to DataLoader workers.
"""

from __future__ import annotations

import os
import threading
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MaskValidationError
from ..geometry import affine_to_space, effective_affine
from ..io.names import is_url
from ..spaces import Space
from .cache import ByteLRU

__all__ = [
    "ImageSource",
    "NiftiImage",
    "Blosc2Image",
    "ZarrImage",
    "open_image",
    "WholeImageReadWarning",
    "AFFINE_KEY",
]

#: Metadata key of the RAS affine (4x4 list) in ``.b2nd`` files ``medmask convert-images``
#: writes (and zarr attributes): the grid of an image that has none in its format.
AFFINE_KEY = "affine_ras"

Box = Sequence[int]


class WholeImageReadWarning(UserWarning):
    """A compressed image is read whole (it cannot be read by window); convert it once."""


class ImageSource(ABC):
    """An image file read by window on its ``(z, y, x)`` grid.

    Attributes:
        path: The file (or folder, for zarr).
        shape: The grid ``(z, y, x)``.
        channels: Number of channels (1 for a 3-D image).
        dtype: The dtype :meth:`read` returns by default.
        space: The ``(z, y, x)`` space when the file records its geometry, else ``None``
            (then only the grid's shape can be checked against an archive's).
    """

    path: str
    shape: tuple[int, int, int]
    channels: int
    dtype: np.dtype
    space: Space | None

    def __init__(self) -> None:
        self._pid: int | None = None
        self._handle: Any = None
        self._lock = threading.Lock()

    @abstractmethod
    def _open(self) -> Any:
        """Open the file in this process (the handle :meth:`_read` gets)."""

    @abstractmethod
    def _read(
        self, handle: Any, lo: tuple[int, ...], hi: tuple[int, ...], cache: Any
    ) -> np.ndarray:
        """The in-grid window ``lo:hi`` (``(z, y, x)``) as ``(C, dz, dy, dx)``."""

    def handle(self) -> Any:
        """This process's open handle (opened on first use, again after a fork)."""
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._handle = self._open()
                    self._pid = os.getpid()
        return self._handle

    def read(
        self,
        box: Box,
        *,
        dtype: Any = None,
        pad: float = 0,
        cache: ByteLRU | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """The window ``box`` = ``(z0, z1, y0, y1, x0, x1)`` as ``(C, z1 - z0, y1 - y0, x1 - x0)``.

        The box may run past the grid: what lies outside is ``pad``.

        Args:
            box: Half-open voxel ranges on the grid.
            dtype: Output dtype (default :attr:`dtype`; ``out``'s when given).
            pad: The value outside the grid.
            cache: Where whole reads are kept (compressed files): a per-process cache.
            out: Write the window into this array (e.g. a slot of a batch) instead of a new one.

        Returns:
            A new array, or ``out``.

        Raises:
            MaskValidationError: ``box`` is not 6 integers with stops >= starts, or ``out``
                has another shape than the window's.
            OSError: The file cannot be read.
        """
        box = _check_box(box, self.path)
        size = (self.channels, *(box[2 * a + 1] - box[2 * a] for a in range(3)))
        lo = tuple(max(box[2 * a], 0) for a in range(3))
        hi = tuple(min(box[2 * a + 1], self.shape[a]) for a in range(3))
        if out is not None and tuple(out.shape) != size:
            raise MaskValidationError(
                f"out has shape {tuple(out.shape)}, the window {size}", path=self.path
            )
        out_dtype = (
            out.dtype if out is not None else self.dtype if dtype is None else np.dtype(dtype)
        )
        inside = all(h > lo_ for lo_, h in zip(lo, hi))
        if inside and lo == tuple(box[0::2]) and hi == tuple(box[1::2]):
            if out is None:
                return _fresh(self._read(self.handle(), lo, hi, cache), out_dtype)
            self._read_into(self.handle(), lo, hi, cache, out)
            return out
        if out is None:  # calloc'd zeros: pages zeroed on first touch
            out = np.zeros(size, out_dtype) if pad == 0 else np.full(size, pad, out_dtype)
        else:
            out.fill(pad)
        if inside:
            dst = tuple(slice(lo[a] - box[2 * a], hi[a] - box[2 * a]) for a in range(3))
            np.copyto(out[(slice(None), *dst)], self._read(self.handle(), lo, hi, cache), "unsafe")
        return out

    def _read_into(
        self, handle: Any, lo: tuple[int, ...], hi: tuple[int, ...], cache: Any, out: np.ndarray
    ) -> None:
        """Write the in-grid window ``lo:hi`` into ``out`` (sources may read in place)."""
        np.copyto(out, self._read(handle, lo, hi, cache), casting="unsafe")

    def close(self) -> None:
        """Drop this process's handle (it reopens on the next read)."""
        self._pid, self._handle = None, None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_pid=None, _handle=None, _lock=None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.path!r}, shape (z, y, x) {self.shape}, "
            f"{self.channels} channel(s), {self.dtype})"
        )


def _fresh(w: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``w`` as a new, writable, C-ordered array of ``dtype`` (``w`` itself when it is one)."""
    if w.dtype == dtype and w.flags.owndata and w.flags.writeable and w.flags.c_contiguous:
        return w
    out = np.empty(w.shape, dtype)
    np.copyto(out, w, casting="unsafe")
    return out


def _check_box(box: Box, path: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in box)
    except (TypeError, ValueError):
        vals = ()
    if len(vals) != 6 or any(vals[2 * a + 1] < vals[2 * a] for a in range(3)):
        raise MaskValidationError(
            f"a window is (z0, z1, y0, y1, x0, x1) with stops >= starts, got {box!r}", path=path
        )
    return vals


def _space_of(affine: Any, shape: tuple[int, int, int], path: str) -> Space | None:
    if affine is None:
        return None
    a = np.asarray(affine, dtype=np.float64)
    try:
        return affine_to_space(a, shape[::-1])
    except MaskValidationError as exc:
        raise exc.add_context(path=path) from None


class NiftiImage(ImageSource):
    """A NIfTI image (``.nii``, or ``.nii.gz`` read whole), 3-D or 4-D (channels last on disk).

    Args:
        path: The file. Compression is told by its bytes (gzip), not its name.

    Raises:
        FileNotFoundError: No such file.
        MaskValidationError: Not 3-D or 4-D, or a sheared affine.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        import nibabel as nib

        super().__init__()
        self.path = str(path)
        img = nib.load(self.path)
        dims = img.shape
        if len(dims) not in (3, 4):
            raise MaskValidationError(
                f"a NIfTI image must be 3-D or 4-D (channels last), got shape {dims}", path=path
            )
        self.shape = (int(dims[2]), int(dims[1]), int(dims[0]))
        self.channels = int(dims[3]) if len(dims) == 4 else 1
        proxy = img.dataobj
        self._slope, self._inter = float(proxy.slope), float(proxy.inter)
        scaled = (self._slope, self._inter) != (1.0, 0.0)
        raw = np.dtype(img.get_data_dtype())
        self.dtype = np.dtype(np.float32) if scaled else raw.newbyteorder("=")
        self.space = affine_to_space(effective_affine(img), dims[:3])
        with open(self.path, "rb") as fh:
            self.compressed = fh.read(2) == b"\x1f\x8b"

    def _open(self) -> Any:
        import nibabel as nib

        if self.compressed:
            return None  # read whole, through the cache
        return nib.load(self.path, mmap="r").dataobj.get_unscaled()

    def _whole(self, cache: ByteLRU | None) -> np.ndarray:
        import nibabel as nib

        st = os.stat(self.path)
        key = ("nifti-whole", self.path, st.st_mtime_ns, st.st_size)
        got = cache.get(key) if cache is not None else None
        if got is None:
            warnings.warn(
                f"{self.path}: a compressed NIfTI cannot be read by window, so it is read "
                "whole (kept in a per-worker cache bounded in bytes); convert the images once "
                "for window reads: 'medmask convert-images SRC_DIR -o DST_DIR --to nii' "
                "(or '--to b2nd')",
                WholeImageReadWarning,
                stacklevel=4,
            )
            data = np.asanyarray(nib.load(self.path).dataobj)
            got = np.ascontiguousarray(_zyx(data[..., None] if data.ndim == 3 else data))
            if cache is not None:
                cache.put(key, got, got.nbytes)
        return got

    def _read(
        self, handle: Any, lo: tuple[int, ...], hi: tuple[int, ...], cache: Any
    ) -> np.ndarray:
        if self.compressed:
            return self._whole(cache)[:, lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        w = handle[lo[2] : hi[2], lo[1] : hi[1], lo[0] : hi[0]]
        w = _zyx(w[..., None] if w.ndim == 3 else w)
        if (self._slope, self._inter) != (1.0, 0.0):
            return w.astype(np.float32) * np.float32(self._slope) + np.float32(self._inter)
        return w


def _zyx(xyzc: np.ndarray) -> np.ndarray:
    """An ``(x, y, z, C)`` array (NIfTI's order) as a ``(C, z, y, x)`` view."""
    return xyzc.transpose(3, 2, 1, 0)


class Blosc2Image(ImageSource):
    """A blosc2 ``.b2nd`` image: ``(C, z, y, x)`` as nnU-Net v2 stores its preprocessed cases,
    or ``(z, y, x)``.

    Args:
        path: The file.
        affine: Its RAS affine when the file does not record one (``medmask convert-images``
            records it; nnU-Net's files do not: then only the shape is checked).

    Raises:
        FileNotFoundError: No such file.
        MaskValidationError: Not 3-D or 4-D.
    """

    def __init__(self, path: str | os.PathLike, affine: Any = None) -> None:
        super().__init__()
        self.path = str(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"{self.path}: no such file")
        arr = self._open()
        if arr.ndim not in (3, 4):
            raise MaskValidationError(
                f"a .b2nd image must be (z, y, x) or (C, z, y, x), got shape {arr.shape}",
                path=path,
            )
        self.shape = tuple(int(s) for s in arr.shape[-3:])  # type: ignore[assignment]
        self.channels = int(arr.shape[0]) if arr.ndim == 4 else 1
        self.dtype = np.dtype(arr.dtype)
        if affine is None and AFFINE_KEY in arr.schunk.vlmeta:
            affine = arr.schunk.vlmeta[AFFINE_KEY]
        self.space = _space_of(affine, self.shape, self.path)

    def _open(self) -> Any:
        import blosc2

        return blosc2.open(self.path, mode="r", mmap_mode="r", dparams={"nthreads": 1})

    def _read(
        self, handle: Any, lo: tuple[int, ...], hi: tuple[int, ...], cache: Any
    ) -> np.ndarray:
        sl = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
        if handle.ndim == 4:
            return handle[(slice(None), *sl)]
        return handle[sl][None]

    def _read_into(
        self, handle: Any, lo: tuple[int, ...], hi: tuple[int, ...], cache: Any, out: np.ndarray
    ) -> None:
        if out.dtype != handle.dtype or not out.flags.c_contiguous:
            super()._read_into(handle, lo, hi, cache, out)
        elif handle.ndim == 4:  # blosc2 decompresses straight into out: no temporary
            handle.get_slice_numpy(out, ((0, *lo), (self.channels, *hi)))
        else:
            handle.get_slice_numpy(out[0], (lo, hi))


class ZarrImage(ImageSource):
    """A zarr array ``(z, y, x)`` / ``(C, z, y, x)``, or an OME-Zarr image (its ``level``).

    OME-Zarr axes are read from its ``multiscales`` metadata (a ``c`` axis becomes the
    channels, a time axis must have one point; spatial axes must be ``z, y, x``). OME-Zarr
    records scale and translation but no axis directions, so the grid is not taken from it:
    pass ``affine`` for a full grid check (else only the shape is checked).

    Args:
        path: The store (folder or URL).
        affine: Its RAS affine (default: an ``affine_ras`` attribute, if any).
        level: The multiscale level (0: full resolution).
        storage_options: fsspec options for a URL.

    Raises:
        MaskValidationError: Axes that are not ``[t,] [c,] z, y, x``, or no array.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        affine: Any = None,
        level: int = 0,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.path = str(path)
        self.level = level
        self.storage_options = None if storage_options is None else dict(storage_options)
        self._array_path, self._lead = self._layout()
        arr = self._open()
        self.shape = tuple(int(s) for s in arr.shape[-3:])  # type: ignore[assignment]
        self.channels = int(arr.shape[-4]) if arr.ndim >= 4 else 1
        self.dtype = np.dtype(arr.dtype)
        if affine is None:
            affine = self._root_attrs().get(AFFINE_KEY)
        self.space = _space_of(affine, self.shape, self.path)

    def _root(self) -> Any:
        import zarr

        return zarr.open(self.path, mode="r", storage_options=self.storage_options)

    def _root_attrs(self) -> dict:
        return dict(self._root().attrs)

    def _layout(self) -> tuple[str | None, int]:
        """The array's path in the store (``None``: the store is the array) and how many
        leading axes of size one precede ``[c,] z, y, x``."""
        import zarr

        root = self._root()
        if isinstance(root, zarr.Array):
            if root.ndim not in (3, 4):
                raise MaskValidationError(
                    f"a zarr image must be (z, y, x) or (C, z, y, x), got shape {root.shape}",
                    path=self.path,
                )
            return None, 0
        attrs = dict(root.attrs)
        ms = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
        if not ms:
            raise MaskValidationError(
                "a zarr group without OME-Zarr 'multiscales' metadata: open the image array "
                "itself (its path inside the store)",
                path=self.path,
            )
        axes = [a["name"] if isinstance(a, dict) else str(a) for a in ms[0].get("axes", [])]
        if axes[-3:] != ["z", "y", "x"] or not set(axes[:-3]) <= {"t", "c"}:
            raise MaskValidationError(
                f"OME-Zarr axes {axes} are not [t,] [c,] z, y, x", path=self.path
            )
        return ms[0]["datasets"][self.level]["path"], int("t" in axes)

    def _open(self) -> Any:
        root = self._root()
        arr = root if self._array_path is None else root[self._array_path]
        if self._lead and arr.shape[0] != 1:
            raise MaskValidationError(
                f"an OME-Zarr image with {arr.shape[0]} time points: one is read",
                path=self.path,
            )
        return arr

    def _read(
        self, handle: Any, lo: tuple[int, ...], hi: tuple[int, ...], cache: Any
    ) -> np.ndarray:
        sl = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
        lead = (0,) * self._lead
        if handle.ndim - self._lead == 4:
            return np.asarray(handle[(*lead, slice(None), *sl)])
        return np.asarray(handle[(*lead, *sl)])[None]


def open_image(
    src: str | os.PathLike | ImageSource,
    *,
    affine: Any = None,
    storage_options: Mapping[str, Any] | None = None,
) -> ImageSource:
    """An :class:`ImageSource` for a path (or the source itself).

    The kind is told by the name: ``.nii``/``.nii.gz`` (nibabel), ``.b2nd`` (blosc2),
    ``.zarr``/``.ome.zarr`` or a folder holding zarr metadata (zarr).

    Args:
        src: A path, a URL (zarr only) or an :class:`ImageSource`.
        affine: For ``.b2nd`` and zarr: the RAS affine when the file records none.
        storage_options: fsspec options for a zarr URL.

    Returns:
        The source.

    Raises:
        FileNotFoundError: No such file.
        MaskValidationError: A kind of image file this does not read.
    """
    if isinstance(src, ImageSource):
        return src
    name = str(src)
    low = name.lower().rstrip("/")
    if low.endswith((".nii", ".nii.gz")) and not is_url(name):
        return NiftiImage(name)
    if low.endswith(".b2nd") and not is_url(name):
        return Blosc2Image(name, affine=affine)
    zarr_meta = any((Path(name) / f).exists() for f in ("zarr.json", ".zarray", ".zgroup"))
    if low.endswith(".zarr") or (not is_url(name) and zarr_meta):
        return ZarrImage(name, affine=affine, storage_options=storage_options)
    if not is_url(name) and not os.path.exists(name):
        raise FileNotFoundError(f"{name}: no such image file")
    raise MaskValidationError(
        "not an image file this reads by window: use an uncompressed NIfTI (.nii), a blosc2 "
        ".b2nd, a zarr / OME-Zarr store (.zarr), or a .nii.gz (read whole); 'medmask "
        "convert-images' converts a folder of .nii.gz",
        path=name,
    )
