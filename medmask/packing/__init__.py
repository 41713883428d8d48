"""Packing whole collections: find the cases, pack each into one archive, resumably, in a
local process pool or on a Dask cluster.

A *case* is what becomes one archive (:class:`Case`, found by :func:`find_cases` /
:func:`discover`): a folder of NIfTI masks, a NIfTI label map (with a label table or a
scheme), a DICOM SEG series (told from other DICOM by its SOP class; its instances
together) or a Slicer ``.seg.nrrd``, mixed at any depth. It becomes
``DEST/<name>.mska`` (:func:`plan_outputs`: a SEG is named after the image series it
references, or ``name_by``; the rest after their path; collisions are settled).
:func:`pack_case` packs one case, :func:`pack_tree` every case of a collection and returns
a :class:`PackReport`:

* **resumable**: a case whose archive already exists, is newer than every file it is made
  from, verifies (every checksum, every mask decoded) and (a NIfTI folder) holds the same
  names is skipped (:func:`already_packed`); ``force=True`` repacks;
* **whole outputs**: archives are built in a temporary folder and renamed into place
  (local paths) or uploaded whole (URLs), so a crash or a killed worker never leaves a
  partial archive under its final name; temporary files of an interrupted case are removed
  at the end of the run;
* **one bad case does not stop the others**: it is reported as failed, with the reason
  (a truncated file, a SEG without referenced series whose own frames make no grid, a
  fractional SEG without ``threshold``...); DICOM files that are not SEGs are skipped and
  counted;
* **every core**: each case reads, crops, bit-packs and compresses its masks on a bounded
  pool of threads (:mod:`medmask.conversions.pipeline`);
* **engines**: one process (``workers=1``), a local process pool (``workers=N``), or Dask
  (``client=``: a :class:`dask.distributed.Client`; each case is one task, and a worker that
  dies mid-case has its task rescheduled on another worker by Dask);
* **URLs**: ``root`` and ``dest`` may be fsspec URLs (``s3://bucket/raw/`` ->
  ``s3://bucket/packed/``). Cases are listed with fsspec; a worker downloads a case to a
  local temporary folder, packs it there and uploads the archive whole.

Example:
    >>> from medmask.packing import pack_tree                         # doctest: +SKIP
    >>> report = pack_tree("Totalsegmentator_dataset/", "packed/", workers=8)
    >>> print(report.summary())                                        # doctest: +SKIP
    >>> from dask.distributed import Client                            # doctest: +SKIP
    >>> report = pack_tree("s3://b/raw/", "s3://b/packed/", client=Client("tcp://host:8786"))

Layout: :mod:`.discover` (finding cases of every kind), :mod:`.cases` (naming them),
:mod:`.case` (one case, the resume check), :mod:`.tree` (:func:`pack_tree`), :mod:`.local`
(this process or a process pool), :mod:`.dask_engine` (Dask), :mod:`.results` (reports),
:mod:`.heap` (glibc heap settings).
"""

from __future__ import annotations

from .case import already_packed, as_case, pack_case
from .cases import case_name, find_cases, plan_outputs
from .dask_engine import dask_client
from .discover import Case, Discovery, discover
from .results import CaseResult, PackReport
from .tree import label_table, pack_tree

__all__ = [
    "Case",
    "Discovery",
    "CaseResult",
    "PackReport",
    "discover",
    "find_cases",
    "as_case",
    "label_table",
    "case_name",
    "plan_outputs",
    "pack_case",
    "already_packed",
    "pack_tree",
    "dask_client",
]
