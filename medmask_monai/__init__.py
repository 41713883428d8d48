"""MONAI integration for medmask: readers, transforms, datasets and patch training.

``from medmask_monai import MaskReader, LoadMask, LoadMaskd, SelectLabels, SelectLabelsd,
MaskArchiveDataset, PatchDataset, RandCropByMaskIndex, RandCropByMaskIndexd``

Needs the ``monai`` extra (torch, monai, nibabel; the ``patches`` extra adds blosc2 and zarr
for image files read by window). Imports ``medmask``; the core never imports this package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the names below are, for type checkers and IDEs
    from ._load import MissingNameWarning
    from .crops import RandCropByMaskIndex, RandCropByMaskIndexd
    from .dataset import MaskArchiveDataset
    from .patches import PatchDataset
    from .reader import MaskReader
    from .transforms import LoadMask, LoadMaskd, SelectLabels, SelectLabelsd

#: Public name -> the module that defines it. A name's module is imported when the name is
#: first used: ``PatchDataset`` (and a DataLoader worker forked or spawned for it) then
#: never imports MONAI, which alone holds ~230 MiB of a process's memory.
_MODULES = {
    "MaskReader": ".reader",
    "LoadMask": ".transforms",
    "LoadMaskd": ".transforms",
    "SelectLabels": ".transforms",
    "SelectLabelsd": ".transforms",
    "MaskArchiveDataset": ".dataset",
    "PatchDataset": ".patches",
    "RandCropByMaskIndex": ".crops",
    "RandCropByMaskIndexd": ".crops",
    "MissingNameWarning": "._load",
}

__all__ = [
    "MaskReader",
    "LoadMask",
    "LoadMaskd",
    "SelectLabels",
    "SelectLabelsd",
    "MaskArchiveDataset",
    "PatchDataset",
    "RandCropByMaskIndex",
    "RandCropByMaskIndexd",
    "MissingNameWarning",
]


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
