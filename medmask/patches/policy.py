"""Where patch centres go: the choice of *what* to centre on, per draw.

A policy sees the classes a case can offer (the selected masks that have voxels and, for
partially labelled data, that are annotated in it) and returns a :class:`Choice`: a class
(centre on a voxel of that mask), the foreground as a whole (a voxel of any selected mask),
the background (a voxel of none) or anywhere on the grid. The sampler
(:class:`~medmask.patches.CentreSampler`) then draws the voxel. Three policies mirror the
usual ones; a new one subclasses :class:`CentrePolicy` and implements :meth:`choose`.

=========================  ================================================================
policy                     like
=========================  ================================================================
:class:`PosNeg`            MONAI's ``RandCropByPosNegLabeld`` (``pos``/``neg`` ratio)
:class:`ClassRatios`       MONAI's ``RandCropByLabelClassesd`` (a ratio per class)
:class:`NnUNetPolicy`      nnU-Net v2's loader (a third foreground, class uniform)
=========================  ================================================================
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import MaskValidationError

__all__ = [
    "Choice",
    "CentrePolicy",
    "PosNeg",
    "ClassRatios",
    "NnUNetPolicy",
    "CLASS",
    "FOREGROUND",
    "BACKGROUND",
    "ANYWHERE",
]

CLASS, FOREGROUND, BACKGROUND, ANYWHERE = "class", "foreground", "background", "anywhere"


@dataclass(frozen=True)
class Choice:
    """What one centre is drawn from.

    Attributes:
        kind: ``"class"`` (a voxel of mask ``name``), ``"foreground"`` (a voxel of any
            selected mask, each voxel equally likely), ``"background"`` (a voxel of no
            selected mask) or ``"anywhere"`` (any voxel of the image's grid).
        name: The class (mask name) for ``"class"``, else ``None``.
    """

    kind: str
    name: str | None = None


def _weight(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise MaskValidationError(f"{what} must be a number >= 0, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise MaskValidationError(f"{what} must be a finite number >= 0, got {value!r}")
    return v


class CentrePolicy(ABC):
    """Decides, for each centre, what it is drawn from (subclass and implement :meth:`choose`)."""

    #: Class names the policy asks for by name (checked against the data: a name found in
    #: no case is an error with close matches); empty for policies that ask for none.
    named_classes: tuple[str, ...] = ()

    @abstractmethod
    def choose(self, classes: Mapping[str, int], rng: np.random.Generator) -> Choice:
        """The choice for one centre.

        Args:
            classes: ``{name: voxels}`` of the classes this case offers: selected, annotated
                in the case and non-empty (voxels > 0), in archive order.
            rng: The random generator to draw from.

        Returns:
            A :class:`Choice`; a ``"class"`` choice names one of ``classes``.
        """


class PosNeg(CentrePolicy):
    """``pos`` : ``neg`` foreground to background centres, as ``RandCropByPosNegLabeld``.

    A foreground centre is a voxel of the selected masks' union (each voxel equally likely,
    also where masks overlap), a background centre a voxel of none of them. A case without
    foreground gives background centres (as MONAI does).

    Args:
        pos: Weight of foreground centres.
        neg: Weight of background centres.

    Raises:
        MaskValidationError: A negative weight, or both zero.
    """

    def __init__(self, pos: float = 1.0, neg: float = 1.0) -> None:
        self.pos, self.neg = _weight(pos, "pos"), _weight(neg, "neg")
        if self.pos + self.neg == 0:
            raise MaskValidationError("pos and neg are both 0: no centre can be drawn")

    def choose(self, classes: Mapping[str, int], rng: np.random.Generator) -> Choice:
        if classes and rng.random() * (self.pos + self.neg) < self.pos:
            return Choice(FOREGROUND)
        return Choice(BACKGROUND)

    def __repr__(self) -> str:
        return f"PosNeg(pos={self.pos:g}, neg={self.neg:g})"


class ClassRatios(CentrePolicy):
    """A ratio per class, as ``RandCropByLabelClassesd``: the class of each centre is drawn in
    proportion to its ratio among the classes the case has, then a voxel of it uniformly.

    Classes a case lacks (absent, empty or not annotated there) are left out and the other
    ratios share their part, as MONAI does. A case offering none of the classes with a
    ratio above 0 gives a background centre if ``background`` > 0, else a centre anywhere.

    Args:
        ratios: ``{class: ratio}``; ``None``: every class of the case with ratio 1.
        background: Ratio of background centres (voxels of no selected mask).

    Raises:
        MaskValidationError: A negative or non-finite ratio, or every ratio 0.
    """

    def __init__(self, ratios: Mapping[str, float] | None = None, background: float = 1.0) -> None:
        self.ratios = (
            None
            if ratios is None
            else {str(n): _weight(r, f"ratio of {n!r}") for n, r in dict(ratios).items()}
        )
        self.background = _weight(background, "background ratio")
        if self.ratios is not None and not any(self.ratios.values()) and not self.background:
            raise MaskValidationError("every ratio is 0: no centre can be drawn")
        self.named_classes = () if self.ratios is None else tuple(self.ratios)

    def choose(self, classes: Mapping[str, int], rng: np.random.Generator) -> Choice:
        if self.ratios is None:
            names = list(classes)
            weights = [1.0] * len(names)
        else:
            names = [n for n in classes if self.ratios.get(n, 0.0) > 0]
            weights = [self.ratios[n] for n in names]
        total = sum(weights) + self.background
        if not names:
            return Choice(BACKGROUND if self.background > 0 else ANYWHERE)
        r = rng.random() * total
        for n, w in zip(names, weights):
            if r < w:
                return Choice(CLASS, n)
            r -= w
        return Choice(BACKGROUND) if self.background > 0 else Choice(CLASS, names[-1])

    def __repr__(self) -> str:
        return f"ClassRatios({self.ratios!r}, background={self.background:g})"


class NnUNetPolicy(CentrePolicy):
    """nnU-Net v2's oversampling: a share ``foreground`` of the centres (default a third) on a
    class chosen uniformly among the classes the case has, then a voxel of it uniformly; the
    others anywhere on the grid. A case without foreground gives centres anywhere (as nnU-Net
    does).

    Args:
        foreground: Probability that a centre is forced onto a class (nnU-Net's
            ``oversample_foreground_percent``, drawn per sample as with its
            ``probabilistic_oversampling``).

    Raises:
        MaskValidationError: ``foreground`` outside ``[0, 1]``.
    """

    def __init__(self, foreground: float = 1 / 3) -> None:
        self.foreground = _weight(foreground, "foreground")
        if self.foreground > 1:
            raise MaskValidationError(f"foreground is a probability, got {foreground!r}")

    def choose(self, classes: Mapping[str, int], rng: np.random.Generator) -> Choice:
        if classes and rng.random() < self.foreground:
            names = list(classes)
            return Choice(CLASS, names[int(rng.integers(len(names)))])
        return Choice(ANYWHERE)

    def __repr__(self) -> str:
        return f"NnUNetPolicy(foreground={self.foreground:.3g})"
