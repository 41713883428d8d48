"""3D Slicer segmentations (``.seg.nrrd``) in and out (needs the ``nrrd`` extra: pynrrd).

A ``.seg.nrrd`` is an NRRD file holding one label map (3-D, ``kinds: domain domain
domain``) or a stack of them (4-D, ``kinds: list domain domain domain``, one *layer* per
entry of the first axis, so that overlapping segments can live in separate layers). Each
segment is described by ``SegmentN_*`` header fields: ``Name``, ``ID``, ``Color`` (three
floats 0-1), ``LabelValue`` and ``Layer`` (a segment is the voxels of its layer equal to
its label value), ``Extent`` (``xmin xmax ymin ymax zmin zmax`` voxel indices; an empty
segment has ``0 -1 0 -1 0 -1``) and ``Tags`` (``key:value|`` pairs, among them
``TerminologyEntry:context~category~type~typeModifier~anatomicContext~region~regionModifier``
with codes written ``scheme^value^meaning``).

Geometry: ``space`` (``left-posterior-superior``, ``right-anterior-superior`` or
``left-anterior-superior``; others are refused), ``space directions`` (one column per
array axis) and ``space origin``; medmask keeps LPS.

Reading keeps empty segments (as empty masks), colours, terminology (as the coded
attributes ``category``/``type``/``type_modifier``/``region``/``region_modifier``), the
segment ID and other tags (under the ``slicer`` attribute). Writing puts overlapping
masks into separate layers (greedy: each mask goes into the first layer where it
overlaps nothing), as Slicer does.

The package: :mod:`.base` (the optional import, NRRD spaces), :mod:`.terminology` (Slicer's
``TerminologyEntry`` <-> coded attributes), :mod:`.read`, :mod:`.write` and :mod:`.format`
(the format table's entry).
"""

from __future__ import annotations

from .base import NRRD_SPACES, _nrrd
from .read import read_seg_nrrd
from .terminology import parse_terminology, terminology_string
from .write import write_seg_nrrd

__all__ = [
    "read_seg_nrrd",
    "write_seg_nrrd",
    "parse_terminology",
    "terminology_string",
    "NRRD_SPACES",
    "_nrrd",
]
