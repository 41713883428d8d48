"""Hold one case in the middle of its packing until the test kills the worker doing it.

A worker killed "mid-case" used to be caught by polling, which missed it when the cases
went by too fast (a loaded machine, a faster build). Here the worker itself says when it is
there: :class:`Gate` replaces ``_run_case`` (the function a local pool or Dask runs per
case); for the chosen case, the first time only, it reads ``after`` masks into the
temporary archive, writes ``paused-<pid>`` into its folder and waits to be killed.

The workers of a ``forkserver`` pool or of a Dask cluster cannot import the tests, so the
gate travels as :class:`GateByPath`, which unpickles by loading this file by its path.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

#: Longest wait for the kill (only against a hang: the test kills the worker at once).
HOLD_LIMIT = 300.0


class Gate:
    """``_run_case`` that pauses the case whose path contains ``case``, once.

    Args:
        folder: The gate's folder (``taken`` and ``paused-<pid>`` appear there).
        case: A part of the case path that names the case to hold.
        after: Masks read before the pause.
    """

    def __init__(self, folder: str, case: str, after: int) -> None:
        self.folder, self.case, self.after = Path(folder), case, after

    def _take(self) -> bool:
        try:
            os.close(os.open(self.folder / "taken", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        return True

    def _hold_after_reads(self) -> None:
        from medmask.conversions.nifti import archive

        real, seen = archive.nifti_to_segmask, []

        def reading(*args, **kwargs):
            if len(seen) == self.after:
                tmp = self.folder / f".paused-{os.getpid()}"
                tmp.write_text(str(os.getpid()))
                tmp.rename(self.folder / f"paused-{os.getpid()}")
                deadline = time.monotonic() + HOLD_LIMIT
                while time.monotonic() < deadline:
                    time.sleep(0.05)
                raise RuntimeError("kill_gate: the test never killed this worker")
            seen.append(args[0])
            return real(*args, **kwargs)

        archive.nifti_to_segmask = reading

    def __call__(self, case, out, options):
        from medmask.packing.case import _run_case

        if self.case in str(case) and self._take():
            self._hold_after_reads()
        return _run_case(case, out, options)


class GateByPath:
    """A :class:`Gate` for another process: pickles as "load tests/packing/kill_gate.py by
    its path and build the gate there" (``eval`` of that one expression)."""

    def __init__(self, folder: Path, case: str, after: int) -> None:
        self.args = (str(folder), case, after)

    def __call__(self, case, out, options):
        return Gate(*self.args)(case, out, options)

    def __reduce__(self):
        load = f"__import__('runpy').run_path({str(Path(__file__))!r})['Gate'](*{self.args!r})"
        return (eval, (load,))
