"""What a packing run reports: :class:`CaseResult` per case, :class:`PackReport` per run."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..errors import MedMaskError

#: Wraps the iterable of finished cases (a progress bar).
Progress = Callable[[Iterable], Iterable]


# -- results ----------------------------------------------------------------------------------
@dataclass
class CaseResult:
    """What happened to one case.

    Attributes:
        case: The case folder (path or URL).
        out: The archive (path or URL).
        status: ``"packed"``, ``"skipped"`` (already packed and verified) or ``"failed"``.
        masks: Masks written (0 unless packed).
        bytes_in: Bytes of the case's mask files (0 unless packed).
        bytes_out: Bytes of the archive written (0 unless packed).
        seconds: Time spent on the case (in the worker).
        notes: Things worth telling (e.g. masks resampled onto the archive's grid).
        error: One line saying what went wrong (``status == "failed"``), naming the case.
        traceback: The full Python traceback of that failure (for ``--debug``), when there is
            one.
    """

    case: str
    out: str
    status: str
    masks: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    traceback: str | None = None


@dataclass
class PackReport:
    """The outcome of :func:`pack_tree`.

    Attributes:
        root: The dataset root.
        dest: The output folder.
        results: One :class:`CaseResult` per case, in case order.
        seconds: Wall time of the whole run.
        engine: ``"1 process"``, ``"N processes"`` or ``"dask <scheduler address>"``.
        skipped_files: ``{what: count}`` of files found and left out on purpose (DICOM
            files that are not SEGs: images, reports...).
    """

    root: str
    dest: str
    results: list[CaseResult]
    seconds: float
    engine: str
    skipped_files: dict[str, int] = field(default_factory=dict)

    @property
    def packed(self) -> list[CaseResult]:
        """Cases packed in this run."""
        return [r for r in self.results if r.status == "packed"]

    @property
    def skipped(self) -> list[CaseResult]:
        """Cases skipped: already packed and verified."""
        return [r for r in self.results if r.status == "skipped"]

    @property
    def failed(self) -> list[CaseResult]:
        """Cases that failed (see their ``error``)."""
        return [r for r in self.results if r.status == "failed"]

    @property
    def ok(self) -> bool:
        """Whether no case failed."""
        return not self.failed

    def summary(self) -> str:
        """One line: counts, masks, bytes before and after, time, destination."""
        packed = self.packed
        n = len(self.results)
        total_in = sum(r.bytes_in for r in packed)
        total_out = sum(r.bytes_out for r in packed)
        ratio = f", {total_in / total_out:.1f}x smaller" if total_out else ""
        files = "".join(f", {k} skipped: {v}" for k, v in self.skipped_files.items())
        return (
            f"{n} case{'' if n == 1 else 's'}: {len(packed)} packed "
            f"({sum(r.masks for r in packed)} masks, {total_in:,} -> {total_out:,} bytes{ratio}), "
            f"{len(self.skipped)} already packed and verified, {len(self.failed)} failed{files}, "
            f"in {self.seconds:.1f} s on {self.engine} -> {self.dest}"
        )


def one_line(exc: BaseException) -> str:
    """The first line of an error's message (a ``KeyError``'s without its quotes), or the
    error's type name when it has no message: what a report or the CLI prints."""
    text = str(exc).strip()
    if isinstance(exc, KeyError) and not isinstance(exc, MedMaskError):
        text = text.strip("'\"")
    first = text.splitlines()[0] if text else ""
    return first or type(exc).__name__


def _failed(case: str, out: str, exc: BaseException, seconds: float = 0.0) -> CaseResult:
    import traceback

    msg = one_line(exc)
    if case not in msg:
        msg = f"{case}: {msg}"
    detail = "".join(traceback.format_exception(exc)) if exc.__traceback__ else None
    return CaseResult(case, out, "failed", seconds=seconds, error=msg, traceback=detail)
