"""Packing whole datasets: find the cases, pack each into one archive, resumably, in a local
process pool or on a Dask cluster.

A *case* is a folder that directly holds NIfTI masks (:func:`find_cases`); it becomes
``DEST/<case name>.mska`` (:func:`case_name`). :func:`pack_case` packs one case,
:func:`pack_tree` packs every case of a dataset and returns a :class:`PackReport`:

* **resumable**: a case whose archive already exists, is newer than every file of the case,
  verifies (every checksum, every mask decoded) and holds the same names is skipped
  (:func:`already_packed`); ``force=True`` repacks;
* **whole outputs**: archives are written to a temporary file and renamed into place (local
  paths) or uploaded whole (URLs), so a crash or a killed worker never leaves a partial
  archive under its final name; temporary files of an interrupted case are removed at the
  end of the run;
* **one bad case does not stop the others**: it is reported as failed, with the reason;
* **engines**: one process (``workers=1``), a local process pool (``workers=N``), or Dask
  (``client=``: a :class:`dask.distributed.Client`; each case is one task, and a worker that
  dies mid-case has its task rescheduled on another worker by Dask);
* **URLs**: ``root`` and ``dest`` may be fsspec URLs (``s3://bucket/raw/`` ->
  ``s3://bucket/packed/``). Cases are listed with fsspec; a worker downloads a case to a local
  temporary folder, packs it there and uploads the archive whole
  (:func:`medmask.io.remote.upload`).

Example:
    >>> from medmask.packing import pack_tree                         # doctest: +SKIP
    >>> report = pack_tree("Totalsegmentator_dataset/", "packed/", workers=8)
    >>> print(report.summary())                                        # doctest: +SKIP
    >>> from dask.distributed import Client                            # doctest: +SKIP
    >>> report = pack_tree("s3://b/raw/", "s3://b/packed/", client=Client("tcp://host:8786"))

Layout: :mod:`.cases` (finding and naming cases), :mod:`.case` (one case, the resume
check), :mod:`.tree` (:func:`pack_tree`), :mod:`.local` (this process or a process pool),
:mod:`.dask_engine` (Dask), :mod:`.results` (reports), :mod:`.heap` (glibc heap settings).
"""

from __future__ import annotations

from .case import already_packed, pack_case
from .cases import case_name, find_cases, plan_outputs
from .dask_engine import dask_client
from .results import CaseResult, PackReport
from .tree import pack_tree

__all__ = [
    "CaseResult",
    "PackReport",
    "find_cases",
    "case_name",
    "plan_outputs",
    "pack_case",
    "already_packed",
    "pack_tree",
    "dask_client",
]
