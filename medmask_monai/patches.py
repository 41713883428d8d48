"""PatchDataset: image + label patches for training, never loading a whole image or label map.

Each item is one patch: a centre drawn from the case's archive index
(:class:`medmask.patches.CentreSampler`), the image window read by slicing its file
(:mod:`medmask.patches.images`) and the label window read from the archive
(``MaskArchive.read_window``: only the masks the window meets are decoded).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
    default_collate,
    get_worker_info,
)

from medmask import MaskArchive
from medmask.catalog import Catalog
from medmask.errors import MaskNotFoundError, MaskValidationError, close_matches
from medmask.patches import (
    ByteLRU,
    CentrePolicy,
    CentreSampler,
    ImageSource,
    NnUNetPolicy,
    PatchCase,
    archive_offset,
    as_case,
    open_image,
    patch_box,
)
from medmask.schemes import LabelScheme

from ._cases import check_on_stale
from ._load import Names, as_numpy_dtype, resolve_names
from ._load import label_dtype as default_label_dtype
from ._open import _OpenArchives
from ._patch_cases import CaseFacts, Images, facts_from_archive, facts_from_catalog

__all__ = ["PatchDataset", "patch_size_of"]


def _batch_tensor(shape: tuple[int, ...], dtype: np.dtype) -> torch.Tensor:
    """An empty tensor for a batch: in a DataLoader worker, in shared memory (as torch's own
    collation allocates it), so that sending it to the main process copies nothing."""
    like = torch.from_numpy(np.empty(0, dtype))
    if get_worker_info() is None:
        return torch.empty(shape, dtype=like.dtype)
    storage = like._typed_storage()._new_shared(int(np.prod(shape)), device=like.device)
    return like.new(storage).resize_(shape)


def patch_size_of(size: int | Sequence[int]) -> tuple[int, int, int]:
    """A patch size as ``(z, y, x)`` (one number: a cube).

    Raises:
        MaskValidationError: Not one or three positive integers.
    """
    vals = [size] * 3 if isinstance(size, int | np.integer) else list(size)
    if len(vals) != 3 or any(
        isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1 for v in vals
    ):
        raise MaskValidationError(f"a patch size is one or three positive integers, got {size!r}")
    return tuple(int(v) for v in vals)  # type: ignore[return-value]


class _Case:
    """One case as the dataset holds it: the image source, the archive, the index facts of
    its selected masks, where the archive lies on the image, its output labels, the masks
    its foreground centres may be drawn from and (with a scheme) its availability."""

    def __init__(self, facts: CaseFacts, image: ImageSource, offset: tuple[int, int, int]) -> None:
        self.case, self.image, self.index = facts.case, image, facts.index
        self.offset, self.labels, self.stored = offset, facts.labels, facts.stored
        self.allowed, self.available = facts.allowed, facts.available


class _Worker:
    """What one process keeps for one dataset: open archives, the sampler with its cache,
    the cache of whole images, its random stream. Never crosses a fork or a pickle."""

    def __init__(self, ds: PatchDataset) -> None:
        self.pid = os.getpid()
        info = get_worker_info()
        stream = [ds.seed, 0 if info is None else int(info.seed) % 2**63]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            stream.append(torch.distributed.get_rank())
        self.rng = np.random.default_rng(np.random.SeedSequence(stream))
        self.archives = _OpenArchives(ds.max_open, ds.storage_options, ds.on_stale)
        self.sampler = CentreSampler(
            ds.policy, foreground=ds.foreground, cache_bytes=ds.cache_bytes
        )
        self.images = ByteLRU(ds.image_cache_bytes)
        self.lock = threading.Lock()


class PatchDataset(Dataset):
    """Patches of image and labels from cases of (image file, ``.mska`` archive).

    Item ``i`` is one patch of case ``i % len(cases)`` (``len(dataset) = len(cases) *
    samples_per_case``), as a dict:

    * ``"image"``: ``float32`` (by default) ``(C, *patch)``, the image window (``pad_value``
      past the image's grid);
    * ``"label"``: ``(1, *patch)`` label map (``mode="labelmap"``: masks labelled as
      ``names`` says, a later mask winning an overlap, as ``LoadMask``) or ``(K, *patch)``
      0/1 channels, one per distinct label (``mode="channels"``: overlaps kept);
    * ``"centre"``: the centre voxel ``(z, y, x)`` on the image's grid (``int64``);
    * ``"case"``: the case's position; ``"kind"``: what the centre was drawn from
      (``"class"``, ``"foreground"``, ``"background"``, ``"anywhere"``); ``"class"``: the
      class of a ``"class"`` draw (else ``""``).

    Spatial axes are ``(z, y, x)`` (the arrays' memory order, as nnU-Net has them);
    ``axes="xyz"`` gives MONAI's ``(x, y, z)``.

    Nothing is read whole: the image window is sliced from its file (an uncompressed NIfTI
    through nibabel's memory map, nnU-Net's ``.b2nd`` through python-blosc2, zarr; a
    ``.nii.gz`` is the exception: read whole, kept in a per-worker cache of
    ``image_cache_bytes``, with a warning on how to convert it); the label window is read from
    the archive, decoding only the masks it meets; the centre comes from the archive's index
    and one decoded mask (kept, packed, in a per-worker cache of ``cache_bytes``).

    Building the dataset reads each archive's index and each image's header, and checks
    that they share a grid (one voxel lattice, an integer offset allowed:
    :func:`medmask.geometry.grid_offset`; an image file without geometry must have the
    archive's shape): a mismatch is an error naming both grids, never a misaligned patch.

    Workers: the dataset holds paths and index facts; each process opens what it reads
    itself (fork or spawn, ``persistent_workers`` or not) and draws from its own random
    stream, seeded from ``seed`` and torch's per-worker seed (and the distributed rank):
    different workers never repeat each other's draws, and a run is reproducible given
    ``seed`` and torch's seed (``torch.manual_seed`` or the DataLoader's ``generator``).
    Works with ``DistributedSampler`` and with archives at URLs.

    Catalogues and partial labels: ``cases`` may be a :class:`medmask.Catalog` (its
    archives, with ``images=`` naming each case's image): the masks' index facts come from
    its rows, so building the dataset opens no archive (only the images' headers), and each
    archive is checked against its row when a worker first opens it (``on_stale``). Centres
    are drawn from the masks a case was annotated for: its ``classes``, else its archive's
    ``annotated`` attribute (``docs/format.md``), else every mask. With ``scheme`` (a
    :class:`medmask.schemes.LabelScheme`), each case is painted under the scheme (its masks
    mapped onto the scheme's classes; one channel per class with ``"channels"``) and each
    item holds ``"label_available"``: one bool per class, the scheme's order.

    Args:
        cases: :class:`~medmask.patches.PatchCase` objects, ``(image, archive)`` pairs,
            dicts with ``image``, ``archive`` (and ``classes``: the annotated classes of a
            partially labelled case), or a :class:`medmask.Catalog`.
        patch_size: ``(z, y, x)``, or one size for a cube.
        names: The masks used: ``None`` (every mask of each archive, labelled 1..N in its
            order), a list (labelled 1..N in that order) or ``{name: label}`` (labels may
            repeat). A name absent from some cases is empty there; a name in no case is an
            error with close matches.
        mode: ``"labelmap"`` or ``"channels"``.
        policy: What centres are drawn from (default :class:`~medmask.patches.NnUNetPolicy`:
            a third on a class present, the rest anywhere).
        samples_per_case: Patches per case per epoch.
        seed: Seed of the random streams.
        foreground: ``"exact"`` (decoded masks) or ``"coords"`` (nnU-Net-style coordinates:
            the ``.fgcoords.npz`` beside an archive, else computed on first use).
        fit: ``"pad"`` (the patch centred on its centre, padded past the grid, as nnU-Net)
            or ``"shift"`` (moved inside the grid where it fits, as MONAI).
        dtype: The image's dtype (default ``float32``; ``None``: the file's).
        pad_value: The image's value past its grid (labels are 0 there).
        label_dtype: The label's dtype (default: ``uint8`` for channels and label maps up to
            label 255, then ``int16``...).
        axes: ``"zyx"`` or ``"xyz"`` (MONAI's order).
        transform: Applied to each item dict (e.g. MONAI augmentations).
        cache_bytes: Per-worker budget of decoded mask rows (or coordinates).
        image_cache_bytes: Per-worker budget of whole images read from ``.nii.gz``.
        max_open: Most archives open per worker.
        storage_options: fsspec options for archives at URLs (default for a catalogue: its
            own).
        images: With a catalogue: ``{case: image}`` or a function of the case name.
        scheme: Paint cases under this scheme and add ``label_available`` (not with
            ``names``).
        on_stale: ``"raise"`` or ``"reread"``: a catalogued archive that changed.

    Raises:
        MaskValidationError: Bad sizes or options, or an archive with no grid.
        MaskNotFoundError: A name (or a class of the policy) in no archive.
        SpaceMismatchError: An image and its archive are not on one grid.
        FileNotFoundError: A missing image or archive.
    """

    def __init__(
        self,
        cases: Sequence[PatchCase | Mapping | tuple],
        patch_size: int | Sequence[int],
        *,
        names: Names = None,
        mode: str = "labelmap",
        policy: CentrePolicy | None = None,
        samples_per_case: int = 1,
        seed: int = 0,
        foreground: str = "exact",
        fit: str = "pad",
        dtype: Any = np.float32,
        pad_value: float = 0.0,
        label_dtype: Any = None,
        axes: str = "zyx",
        transform: Callable[[dict], Any] | None = None,
        cache_bytes: int = 64 << 20,
        image_cache_bytes: int = 1 << 30,
        max_open: int = 32,
        storage_options: Mapping[str, Any] | None = None,
        images: Images | None = None,
        scheme: LabelScheme | None = None,
        on_stale: str = "raise",
    ) -> None:
        self.patch = patch_size_of(patch_size)
        if scheme is not None and names is not None:
            raise MaskValidationError("give names= or scheme=, not both")
        if storage_options is None and isinstance(cases, Catalog):
            storage_options = cases.storage_options
        self.scheme, self.on_stale = scheme, check_on_stale(on_stale)
        self._check_options(mode, fit, axes, samples_per_case)
        self.mode, self.fit, self.axes = mode, fit, axes
        self.samples_per_case = int(samples_per_case)
        self.policy = NnUNetPolicy() if policy is None else policy
        CentreSampler(self.policy, foreground=foreground, cache_bytes=cache_bytes)  # checks
        self.seed, self.foreground = int(seed), foreground
        self.dtype = None if dtype is None else as_numpy_dtype(dtype)
        self.pad_value, self.transform = pad_value, transform
        self.cache_bytes, self.image_cache_bytes = cache_bytes, image_cache_bytes
        self.max_open = max(1, int(max_open))
        self.storage_options = None if storage_options is None else dict(storage_options)
        self.names = resolve_names(names)
        if isinstance(cases, Catalog):
            facts = facts_from_catalog(cases, images, self.names, scheme)
        else:
            facts = [
                facts_from_archive(as_case(c), self.names, scheme, self.storage_options)
                for c in cases
            ]
        self.cases = [self._case(f) for f in facts]
        if not self.cases:
            raise MaskValidationError("a patch dataset needs at least one case")
        self._check_names()
        channels = {c.image.channels for c in self.cases}
        if len(channels) > 1:
            raise MaskValidationError(
                f"the cases' images have different numbers of channels ({sorted(channels)}): "
                "patches of them cannot be batched"
            )
        self.channels = channels.pop()
        self._image_dtype = self.dtype or np.result_type(*(c.image.dtype for c in self.cases))
        if scheme is not None:  # every class has its channel and label, in every case
            self.levels = scheme.labels()
            top = max(self.levels)
        else:
            top = max((max(c.labels.values(), default=1) for c in self.cases), default=1)
            self.levels = sorted({v for c in self.cases for v in c.labels.values()})
        chosen = as_numpy_dtype(label_dtype)
        self.label_dtype = chosen or (
            np.dtype(np.uint8) if mode == "channels" else default_label_dtype(top)
        )
        self._worker: _Worker | None = None

    @staticmethod
    def _check_options(mode: str, fit: str, axes: str, samples: object) -> None:
        if mode not in ("labelmap", "channels"):
            raise MaskValidationError(f"mode must be 'labelmap' or 'channels', got {mode!r}")
        if fit not in ("pad", "shift"):
            raise MaskValidationError(f"fit must be 'pad' or 'shift', got {fit!r}")
        if axes not in ("zyx", "xyz"):
            raise MaskValidationError(f"axes must be 'zyx' or 'xyz', got {axes!r}")
        if isinstance(samples, bool) or not isinstance(samples, int | np.integer) or samples < 1:
            raise MaskValidationError(f"samples_per_case must be >= 1, got {samples!r}")

    def _case(self, facts: CaseFacts) -> _Case:
        """Open the image's header and check that it shares the archive's grid."""
        image = open_image(facts.case.image)
        offset = archive_offset(
            facts.space,
            image.shape,
            image.space,
            archive_name=str(facts.case.archive),
            image_name=image.path,
        )
        return _Case(facts, image, offset)

    def _check_names(self) -> None:
        """Every requested name, and every class the policy names, is in some archive."""
        stored_any = {n for c in self.cases for n in c.stored}
        wanted = list(self.names or ()) + [
            n for n in self.policy.named_classes if self.names is None or n not in self.names
        ]
        for n in wanted:
            if n not in stored_any:
                where = "archives" if len(self.cases) > 1 else "archive"
                raise MaskNotFoundError(
                    f"no mask named {n!r} in the {len(self.cases)} {where}"
                    + close_matches(n, stored_any)
                )
        if self.names is not None:
            outside = [n for n in self.policy.named_classes if n not in self.names]
            if outside:
                raise MaskValidationError(
                    f"the policy names classes {outside} that are not among the names used"
                )

    def __len__(self) -> int:
        return len(self.cases) * self.samples_per_case

    def _state(self) -> _Worker:
        w = self._worker
        if w is None or w.pid != os.getpid():  # first use here, or a forked child
            w = self._worker = _Worker(self)
        return w

    def _position(self, i: object) -> int:
        n = len(self)
        if isinstance(i, bool) or not isinstance(i, int | np.integer):
            raise TypeError(f"dataset indices are integers, got {type(i).__name__}")
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} patches")
        return int(i) % len(self.cases)

    def __getitem__(self, i: int | Sequence[int]) -> Any:
        """One patch (an integer index), or a whole batch (a sequence of indices, as
        :meth:`loader` asks): the same keys, stacked, written straight into one tensor per
        key (in a worker: in shared memory, so torch sends it without another copy)."""
        if isinstance(i, list | tuple | range | np.ndarray | torch.Tensor):
            ks = [self._position(int(j)) for j in i]
            if self.transform is not None:
                return default_collate([self._item(k) for k in ks])
            return self._batch(ks)
        return self._item(self._position(i))

    def _draw(self, k: int, w: _Worker) -> tuple[_Case, MaskArchive, Any, tuple[int, ...]]:
        """Case ``k``'s archive, a centre and its patch box."""
        case = self.cases[k]
        ar = w.archives.get(k, case.case.archive)
        with w.lock:
            centre = w.sampler.draw(
                ar,
                case.index,
                w.rng,
                grid_shape=case.image.shape,
                offset=case.offset,
                allowed=case.allowed,
            )
        return case, ar, centre, patch_box(centre.zyx, self.patch, case.image.shape, self.fit)

    def _item(self, k: int) -> Any:
        w = self._state()
        case, ar, centre, box = self._draw(k, w)
        image = case.image.read(box, dtype=self.dtype, pad=self.pad_value, cache=w.images)
        label = self._label(ar, case, box)
        if self.axes == "xyz":
            image, label = image.transpose(0, 3, 2, 1), label.transpose(0, 3, 2, 1)
        item = {
            "image": torch.from_numpy(np.ascontiguousarray(image)),
            "label": torch.from_numpy(np.ascontiguousarray(label)),
            "centre": torch.tensor(centre.zyx, dtype=torch.int64),
            "case": k,
            "kind": centre.kind,
            "class": centre.name or "",
        }
        if case.available is not None:
            item["label_available"] = torch.from_numpy(case.available.copy())
        return self.transform(item) if self.transform is not None else item

    def _batch(self, ks: list[int]) -> dict:
        """Patches of cases ``ks`` stacked, each written into its slot of the batch."""
        w = self._state()
        spatial = self.patch if self.axes == "zyx" else self.patch[::-1]
        n_labels = 1 if self.mode == "labelmap" else len(self.levels)
        image = _batch_tensor((len(ks), self.channels, *spatial), self._image_dtype)
        label = _batch_tensor((len(ks), n_labels, *spatial), self.label_dtype)
        img_np, lab_np = image.numpy(), label.numpy()
        centres, kinds, classes = [], [], []
        for b, k in enumerate(ks):
            case, ar, centre, box = self._draw(k, w)
            read = {"dtype": self._image_dtype, "pad": self.pad_value, "cache": w.images}
            lab = self._label(ar, case, box)
            if self.axes == "zyx":
                case.image.read(box, out=img_np[b], **read)
                lab_np[b] = lab
            else:
                img_np[b] = case.image.read(box, **read).transpose(0, 3, 2, 1)
                lab_np[b] = lab.transpose(0, 3, 2, 1)
            centres.append(centre.zyx)
            kinds.append(centre.kind)
            classes.append(centre.name or "")
        out = {
            "image": image,
            "label": label,
            "centre": torch.tensor(centres, dtype=torch.int64).reshape(len(ks), 3),
            "case": torch.tensor(ks, dtype=torch.int64),
            "kind": kinds,
            "class": classes,
        }
        if self.cases[ks[0]].available is not None:  # with a scheme: every case has one
            out["label_available"] = torch.from_numpy(
                np.stack([self.cases[k].available for k in ks]).astype(bool)
            )
        return out

    def loader(
        self,
        batch_size: int,
        *,
        shuffle: bool = True,
        sampler: Sampler | None = None,
        drop_last: bool = False,
        **kwargs: Any,
    ) -> DataLoader:
        """A ``DataLoader`` that asks the dataset for whole batches.

        The same batches as ``DataLoader(ds, batch_size, ...)`` gives (the same keys, shapes
        and dtypes), built in the worker straight into one shared-memory tensor per key
        instead of per-patch tensors that torch then copies into a batch.

        Args:
            batch_size: Patches per batch.
            shuffle: Random order (torch's generator: ``torch.manual_seed``); ignored with
                ``sampler``.
            sampler: Which indices, e.g. ``DistributedSampler(ds)``.
            drop_last: Drop a last, smaller batch.
            **kwargs: For the ``DataLoader`` (``num_workers``, ``persistent_workers``,
                ``multiprocessing_context``, ``pin_memory``...).

        Returns:
            The ``DataLoader``.
        """
        base = sampler or (RandomSampler(self) if shuffle else SequentialSampler(self))
        batches = BatchSampler(base, batch_size, drop_last)
        return DataLoader(self, batch_size=None, sampler=batches, **kwargs)

    def _label(self, ar: MaskArchive, case: _Case, box: tuple[int, ...]) -> np.ndarray:
        """The label window of ``box`` (image grid) from the archive, as ``(C, *patch)``."""
        dz, dy, dx = case.offset
        window = (
            (box[0] - dz, box[1] - dz),
            (box[2] - dy, box[3] - dy),
            (box[4] - dx, box[5] - dx),
        )
        if self.mode == "labelmap":
            lab = ar.read_window(window, names=case.labels, as_="label_map")
            return np.asarray(lab, dtype=self.label_dtype).reshape(1, *self.patch)
        present = sorted(set(case.labels.values()))
        if present == self.levels:  # every channel's masks are in this archive
            return ar.read_window(window, names=case.labels, as_="stack", dtype=self.label_dtype)
        out = np.zeros((len(self.levels), *self.patch), self.label_dtype)
        if present:
            stack = ar.read_window(window, names=case.labels, as_="stack", dtype=self.label_dtype)
            out[[self.levels.index(v) for v in present]] = stack
        return out

    def close(self) -> None:
        """Close what the calling process opened (it reopens on the next item)."""
        w, self._worker = self._worker, None
        if w is not None and w.pid == os.getpid():
            w.archives.close()
            for c in self.cases:
                c.image.close()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_worker"] = None  # never ship open files, caches or a lock to another process
        return state

    def __repr__(self) -> str:
        return (
            f"PatchDataset({len(self.cases)} cases, {len(self)} patches of {self.patch}, "
            f"{self.mode}, {self.policy!r})"
        )
