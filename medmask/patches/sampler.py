"""Draw patch centres from an archive's index and a few small decodes.

:class:`CaseIndex` is what the sampler knows of one case without decoding anything: the
grid and, per selected mask, its voxel count and bounding box (from the index; a version-1
archive, whose index records neither, is decoded once when its ``CaseIndex`` is made).
:class:`CentreSampler` asks its policy (:mod:`.policy`) what to centre on, then draws the
voxel exactly: a voxel of the chosen mask (its crop decoded once and kept, packed, in a
per-process cache bounded in bytes), or nnU-Net-style precomputed coordinates
(:mod:`.coords`); background voxels by rejection against the masks whose boxes hold them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ..bbox import BBox
from ..errors import MaskValidationError
from ..storage import MaskArchive
from .cache import ByteLRU
from .coords import coords_for_case
from .policy import ANYWHERE, BACKGROUND, CLASS, FOREGROUND, CentrePolicy
from .voxels import MaskVoxels

__all__ = ["CaseIndex", "Centre", "CentreSampler", "FOREGROUND_MODES", "patch_box"]

#: How class voxels are drawn: decoded masks, or nnU-Net-style sampled coordinates.
FOREGROUND_MODES = ("exact", "coords")


class Centre(NamedTuple):
    """A drawn centre: ``zyx`` on the image's grid, what it was drawn from (``kind``, see
    :class:`~medmask.patches.Choice`) and the class for ``"class"`` draws."""

    zyx: tuple[int, int, int]
    kind: str
    name: str | None = None


@dataclass(frozen=True)
class CaseIndex:
    """What the sampler needs of one archive, read from its index.

    Attributes:
        key: The archive's path or URL (names it in caches and messages).
        shape: The archive's grid ``(z, y, x)``.
        masks: ``{name: (voxels, bbox)}`` of the selected masks present in the archive, in
            archive order (``bbox`` ``None`` for an empty mask).
    """

    key: str
    shape: tuple[int, int, int]
    masks: dict[str, tuple[int, BBox | None]] = field(default_factory=dict)

    @classmethod
    def of(cls, ar: MaskArchive, names: Iterable[str] | None = None) -> CaseIndex:
        """The index facts of ``ar``'s masks (``names``: only those; absent ones skipped).

        Raises:
            MaskValidationError: The archive holds no mask yet (no grid).
        """
        if ar.space is None:
            raise MaskValidationError("the archive holds no mask yet (no grid)", path=ar.path)
        wanted = None if names is None else set(names)
        masks: dict[str, tuple[int, BBox | None]] = {}
        for info in ar.infos():
            if wanted is not None and info.name not in wanted:
                continue
            if info.voxels is None:  # version 1: neither count nor tight box in the index
                crop, box = ar.read_cropped(info.index)
                masks[info.name] = (int(np.count_nonzero(crop)), box)
            else:
                masks[info.name] = (int(info.voxels), info.bbox if info.voxels else None)
        shape = tuple(int(s) for s in ar.space.shape)
        return cls(str(ar.path), shape, masks)  # type: ignore[arg-type]

    def classes(self, allowed: Collection[str] | None = None) -> dict[str, int]:
        """``{name: voxels}`` of the non-empty masks (``allowed``: only those), archive order."""
        return {
            n: v for n, (v, _) in self.masks.items() if v > 0 and (allowed is None or n in allowed)
        }

    def holding(self, zyx: tuple[int, int, int]) -> list[str]:
        """The non-empty masks whose box holds archive voxel ``zyx``."""
        z, y, x = zyx
        return [
            n
            for n, (v, b) in self.masks.items()
            if v and b[0] <= z < b[1] and b[2] <= y < b[3] and b[4] <= x < b[5]
        ]


def patch_box(
    centre: Iterable[int], size: Iterable[int], shape: Iterable[int], fit: str = "pad"
) -> tuple[int, int, int, int, int, int]:
    """The half-open ``(z0, z1, y0, y1, x0, x1)`` box of a patch around ``centre``.

    Args:
        centre: The centre voxel ``(z, y, x)``.
        size: The patch size ``(z, y, x)``; the centre is voxel ``size // 2`` of the patch.
        shape: The grid ``(z, y, x)``.
        fit: ``"pad"``: the box as it falls, possibly past the grid (read zero-padded, as
            nnU-Net does); ``"shift"``: moved inside the grid where the patch fits (as
            MONAI's crop samplers do; a patch larger than the grid stays centred).

    Returns:
        The box.

    Raises:
        MaskValidationError: An unknown ``fit``.
    """
    if fit not in ("pad", "shift"):
        raise MaskValidationError(f"fit must be 'pad' or 'shift', got {fit!r}")
    out: list[int] = []
    for c, s, n in zip(centre, size, shape):
        lo = int(c) - int(s) // 2
        if fit == "shift" and s <= n:
            lo = min(max(lo, 0), int(n) - int(s))
        out += [lo, lo + int(s)]
    return tuple(out)  # type: ignore[return-value]


class CentreSampler:
    """Draws patch centres for a policy, exactly, from an archive's index and its masks.

    Per process it keeps one cache bounded by ``cache_bytes``: the chosen masks' packed rows
    (``foreground="exact"``) or their sampled coordinates (``"coords"``), keyed by archive,
    commit generation and mask, so a mask is decoded once per worker while it stays cached
    and an archive rewritten in place is never served stale rows.

    Args:
        policy: What each centre is drawn from.
        foreground: ``"exact"``: a class voxel is drawn uniformly from the decoded mask;
            ``"coords"``: from nnU-Net-style sampled coordinates (up to 10,000 per class, or
            1 %), read from the file :func:`~medmask.patches.save_foreground_coords` wrote
            beside a local archive, else computed on first use.
        cache_bytes: The per-process cache budget.
        max_tries: Most rejections of one foreground or background draw before giving up.

    Raises:
        MaskValidationError: A bad ``foreground``, ``cache_bytes`` or ``max_tries``.
    """

    def __init__(
        self,
        policy: CentrePolicy,
        *,
        foreground: str = "exact",
        cache_bytes: int = 64 << 20,
        max_tries: int = 1000,
    ) -> None:
        if not isinstance(policy, CentrePolicy):
            raise MaskValidationError(f"policy must be a CentrePolicy, got {policy!r}")
        if foreground not in FOREGROUND_MODES:
            raise MaskValidationError(
                f"foreground must be one of {FOREGROUND_MODES}, got {foreground!r}"
            )
        if isinstance(max_tries, bool) or not isinstance(max_tries, int) or max_tries < 1:
            raise MaskValidationError(f"max_tries must be a positive integer, got {max_tries!r}")
        self.policy = policy
        self.foreground = foreground
        self.max_tries = max_tries
        self.cache = ByteLRU(cache_bytes)

    # -- what the cache holds ------------------------------------------------------------
    def voxels(self, ar: MaskArchive, case: CaseIndex, name: str) -> MaskVoxels:
        """Mask ``name``'s packed voxels (decoded on the first call, then cached)."""
        key = (case.key, ar.generation, "rows", name)
        mv = self.cache.get(key)
        if mv is None:
            crop, box = ar.read_cropped(name)
            if box is None:
                raise MaskValidationError(
                    "the mask has no voxels: no foreground centre can be drawn from it",
                    path=case.key,
                    mask=name,
                )
            mv = MaskVoxels(crop, box, name)
            self.cache.put(key, mv, mv.nbytes)
        return mv

    def _coords(self, ar: MaskArchive, case: CaseIndex, name: str) -> np.ndarray:
        key = (case.key, ar.generation, "coords", name)
        got = self.cache.get(key)
        if got is None:
            got = coords_for_case(ar, name, lambda: self.voxels(ar, case, name))
            self.cache.put(key, got, got.nbytes)
        return got

    # -- drawing -------------------------------------------------------------------------
    def draw(
        self,
        ar: MaskArchive,
        case: CaseIndex,
        rng: np.random.Generator,
        *,
        grid_shape: Iterable[int] | None = None,
        offset: Iterable[int] = (0, 0, 0),
        allowed: Collection[str] | None = None,
    ) -> Centre:
        """One centre, on the image's grid.

        Args:
            ar: The case's archive, open.
            case: Its :class:`CaseIndex` (the selected masks).
            rng: The random generator.
            grid_shape: The image's grid ``(z, y, x)`` (default: the archive's).
            offset: Where the archive lies on the image's grid: archive voxel ``v`` is
                image voxel ``v + offset`` (:func:`medmask.geometry.grid_offset`).
            allowed: The classes annotated in this case (``None``: all); the foreground
                of a partially labelled case is drawn only from these.

        Returns:
            The :class:`Centre`.

        Raises:
            MaskValidationError: A draw found no voxel in ``max_tries`` tries (background
                on a grid the masks fill), or the policy chose a class the case lacks.
            CorruptFileError: A mask's blob is damaged (the error names file and mask).
        """
        shape = case.shape if grid_shape is None else tuple(int(s) for s in grid_shape)
        off = tuple(int(v) for v in offset)
        classes = case.classes(allowed)
        choice = self.policy.choose(classes, rng)
        if choice.kind == ANYWHERE:
            return Centre(tuple(int(rng.integers(n)) for n in shape), ANYWHERE)  # type: ignore[arg-type]
        if choice.kind == BACKGROUND:
            return Centre(self._background(ar, case, rng, shape, off), BACKGROUND)
        if choice.kind == FOREGROUND:
            zyx, name = self._union(ar, case, rng, classes)
            return Centre(_shift(zyx, off), FOREGROUND, name)
        if choice.kind == CLASS and choice.name in classes:
            return Centre(
                _shift(self._class_voxel(ar, case, choice.name, rng), off), CLASS, choice.name
            )
        raise MaskValidationError(
            f"the policy {self.policy!r} chose {choice!r}, which this case does not offer "
            f"(classes with voxels: {sorted(classes)})",
            path=case.key,
        )

    def _class_voxel(
        self, ar: MaskArchive, case: CaseIndex, name: str, rng: np.random.Generator
    ) -> tuple[int, int, int]:
        if self.foreground == "coords":
            coords = self._coords(ar, case, name)
            return tuple(int(v) for v in coords[int(rng.integers(len(coords)))])  # type: ignore[return-value]
        return self.voxels(ar, case, name).draw(rng)

    def _union(
        self, ar: MaskArchive, case: CaseIndex, rng: np.random.Generator, classes: dict[str, int]
    ) -> tuple[tuple[int, int, int], str]:
        """A voxel of the union of ``classes``, uniform: a mask drawn by its voxel count, a
        voxel of it, kept with probability 1 / (masks holding it)."""
        names = list(classes)
        cum = np.cumsum([classes[n] for n in names])
        for _ in range(self.max_tries):
            name = names[int(np.searchsorted(cum, rng.integers(int(cum[-1])), side="right"))]
            zyx = self._class_voxel(ar, case, name, rng)
            cover = sum(
                1
                for other in case.holding(zyx)
                if other in classes and zyx in self.voxels(ar, case, other)
            )
            if cover <= 1 or rng.random() * cover < 1:
                return zyx, name
        raise MaskValidationError(  # pragma: no cover - needs > max_tries rejections
            f"no foreground voxel accepted in {self.max_tries} tries", path=case.key
        )

    def _background(
        self,
        ar: MaskArchive,
        case: CaseIndex,
        rng: np.random.Generator,
        shape: tuple[int, ...],
        off: tuple[int, ...],
    ) -> tuple[int, int, int]:
        for _ in range(self.max_tries):
            v = tuple(int(rng.integers(n)) for n in shape)
            u = (v[0] - off[0], v[1] - off[1], v[2] - off[2])
            if not any(u in self.voxels(ar, case, n) for n in case.holding(u)):
                return v  # type: ignore[return-value]
        raise MaskValidationError(
            f"no background voxel found in {self.max_tries} random tries: the selected masks "
            "cover (nearly) the whole grid; use a policy without background centres "
            "(e.g. NnUNetPolicy, or ClassRatios(background=0))",
            path=case.key,
        )

    def __repr__(self) -> str:
        return (
            f"CentreSampler({self.policy!r}, foreground={self.foreground!r}, cache={self.cache!r})"
        )


def _shift(zyx: Iterable[int], off: tuple[int, ...]) -> tuple[int, int, int]:
    z, y, x = zyx
    return z + off[0], y + off[1], x + off[2]
