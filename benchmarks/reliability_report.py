"""Run the reliability campaign at full scale and write its page (``bench_output/reliability.md``;
``docs/reliability.md`` with ``--write-docs``).

    make reliability                       # = .venv/bin/python benchmarks/reliability_report.py
    make reliability ARGS=--write-docs     # and rewrite docs/reliability.md
    .venv/bin/python benchmarks/reliability_report.py --quick     # small scale, a minute
    .venv/bin/python benchmarks/reliability_report.py --fuzz-seconds 600 --json figures.json

Every figure on the page comes from this run: the hostile/corrupt file sweep
(tests/reliability/mutators.py through the reader contract of tests/reliability/contract.py), SIGKILL
cycles, failing writes, concurrent readers, the DataLoader leak run and the two fuzzers.
The page is written even when a guarantee fails (the failures are listed); the exit
status is then 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from reliability import contract as C  # noqa: E402
from reliability import fuzzrun  # noqa: E402
from reliability import mutators as M  # noqa: E402
from reliability import samples as S  # noqa: E402
from reliability import workload as W  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
from _regions import begin, end  # noqa: E402

FAMILY_TEXT = {
    "intact": "the sample itself, untouched: must read back exactly (a reader that rejects "
    "everything fails here)",
    "truncate-boundary": "cut 1 byte before, at and after every section and header-field boundary",
    "truncate-random": "cut at a random offset",
    "bitflip-header": "every single-bit flip of the fixed header (all 8 bits of every byte)",
    "bitflip-random": "one random bit flipped anywhere",
    "byte-random": "one random byte set to 0x00, 0xFF or a random value",
    "field-extreme": "each integer header field (and v1 blob-header field) set to 0, 1, max, 2**63, "
    "2**64-1, file size +-1, ... (checksums left stale)",
    "field-extreme-forged": "the same with the header/slot checksum recomputed (v2): validation alone must stop it",
    "hostile-json": "forged space / mapping / index / meta / rows: shapes overflowing or <= 0, 2-D/4-D, "
    "non-mask dtypes, bad UTF-8, malformed or 100,000-deep JSON, duplicate names, bboxes outside "
    "the volume, offsets and lengths past the end or near 2**64, index chains, commit slots",
    "v1-blob-header": "version-1 blob headers: flag, dtype strings, ndim 0..255, shapes 0/-1/2**62/"
    "overflowing, payloads not zstd, without content size, truncated",
    "bomb": "decompression bombs: tiny frames claiming 1-64 GiB with a consistent header, frames "
    "that produce more than they declare, frames without or with an absurd content size",
    "misc": "empty file, magic only, zeros, random bytes, unknown versions, the other kind's magic",
}

STATUS_COLS = [
    ("rejected", "CorruptFileError at open"),
    ("partial", "opened; damaged masks raised CorruptFileError, the rest equal"),
    ("intact", "read back equal"),
    ("older", "previous commit read (v2 archive), equal"),
    ("different", "read back different data"),
]


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def _permission_cases() -> dict:
    """The permission cases in a folder the unprivileged user can reach (the report's
    temporary folder is mode 0700: every refusal there would come from the path)."""
    with W.unprivileged_folder() as folder:
        return W.permission_cases(folder / "perm")


def run_all(args: argparse.Namespace, work: Path) -> dict:
    quick = args.quick
    fig: dict = {"started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    t_all = time.perf_counter()

    print("hostile/corrupt file sweep ...", flush=True)
    samples = S.build_samples()
    n_random = 40 if quick else args.random
    sweep = C.run_sweep(M.generate(samples, n_random=n_random, seed=args.seed), workers=2)
    fig["sweep"] = {
        "counts": {"|".join(k): v for k, v in sweep.counts.items()},
        "by_family": sweep.by_family(),
        "total": sweep.total,
        "failures": sweep.failures,
        "max_seconds": sweep.max_seconds,
        "max_seconds_case": sweep.max_seconds_case,
        "max_peak": sweep.max_peak,
        "max_peak_case": sweep.max_peak_case,
        "worker_restarts": sweep.worker_restarts,
        "worker_max_rss_kib": sweep.worker_max_rss_kib,
        "wall": sweep.wall,
        "samples": {
            n: {"kind": s.kind, "bytes": len(s.data), "masks": len(s.expected)}
            for n, s in samples.items()
        },
        "n_random": n_random,
    }

    print("crash-kill cycles ...", flush=True)
    kc = {}
    for codec, cycles in (
        (None, 40 if quick else args.kill_cycles),
        ("zstd", 20 if quick else args.kill_cycles // 2),
    ):
        (work / f"kill-{codec}").mkdir(parents=True)
        kc[f"append v{1 if codec else 2}"] = W.kill_cycles(
            work / f"kill-{codec}" / "a.mska", cycles, codec, seed=args.seed
        )
    for codec in W.CODECS:
        for kind in ("mska", "msk"):
            d = work / f"replace-{kind}-{codec}"
            d.mkdir(parents=True)
            label = f"{'mode w' if kind == 'mska' else 'save_mask'} v{1 if codec else 2}"
            kc[label] = W.replace_cycles(
                d, 20 if quick else args.replace_cycles, codec, kind, seed=args.seed
            )
    fig["kill"] = kc

    print("failing writes ...", flush=True)
    fig["failing"] = {
        "RLIMIT_FSIZE (EFBIG)": W.fsize_limit_cases(work / "fsize"),
        "512 KiB tmpfs (ENOSPC)": W.tmpfs_full_cases(work / "tmpfs"),
        "permission denied (EACCES)": _permission_cases(),
        "EIO at each write step": W.io_error_cases(work / "eio"),
    }

    print("concurrent readers ...", flush=True)
    fig["concurrency"] = {
        f"v{1 if codec else 2}": W.concurrent_readers(
            work / f"conc-{codec}.mska",
            appends=40 if quick else args.concurrency_appends,
            readers=2,
            threads=3,
            codec=codec,
        )  # fmt: skip
        for codec in W.CODECS
    }

    print("DataLoader leak run ...", flush=True)
    try:
        archives = []
        for c in range(12):
            p = work / "leak" / f"case{c}.mska"
            p.parent.mkdir(exist_ok=True)
            with W.MaskArchive(p, "w", codec="zstd" if c % 4 == 3 else None) as ar:
                for k in range(40):
                    ar.add(f"m{k + c}", W.mask(k + c))
            archives.append(p)
        fig["leak"] = W.leak_run(
            archives, items=1000 if quick else args.leak_items, workers=2, epochs=2, max_open=4
        )
    except ImportError as exc:
        fig["leak"] = {"skipped": str(exc)}

    print("fuzzers ...", flush=True)
    fz = {}
    secs = 20 if quick else args.fuzz_seconds
    try:
        import atheris  # noqa: F401

        fz["fuzz_forged.py"] = fuzzrun.run(
            "fuzz_forged.py", work / "fuzz-forged", f"-max_total_time={secs}", "-seed=1"
        )
        if (REPO / "tests" / "reliability" / "fuzz_readers.py").exists():
            fz["fuzz_readers.py"] = fuzzrun.run(
                "fuzz_readers.py", work / "fuzz-readers", f"-max_total_time={secs}", "-seed=1",
                seeds=REPO / "tests" / "fixtures" / "fuzz_corpus",
            )  # fmt: skip
    except ImportError as exc:
        fz["skipped"] = str(exc)
    for v in fz.values():
        if isinstance(v, dict):
            v.pop("tail", None)
    fig["fuzz"] = fz

    print("crasher fixtures ...", flush=True)
    crashers = sorted(
        p for p in (REPO / "tests" / "fixtures" / "crashers").iterdir() if p.is_file()
    )
    bad = []
    with C.Worker() as w:
        for p in crashers:
            data = p.read_bytes()
            kind = ("mska" if data[:4] == b"MSKA" else "msk") + (
                "1" if data[4:5] == b"\x01" else "2"
            )
            res = w.check(kind, kind, data)
            if res.status in C.FAIL_STATUSES or not (res.status == "rejected" or res.failed):
                bad.append(f"{p.name}: {res.status} {res.detail}")
    fig["crashers"] = {"files": len(crashers), "problems": bad}
    fig["seconds"] = time.perf_counter() - t_all
    return fig


# --------------------------------------------------------------------------------------------
def problems_of(fig: dict) -> list[str]:
    out = [f"sweep {s}/{f}/{lab}: {why}" for s, f, lab, why in fig["sweep"]["failures"]]
    for group in ("kill", "failing", "concurrency"):
        for name, r in fig[group].items():
            out += [f"{group} {name}: {p}" for p in r.get("problems", [])]
    out += [f"crasher {p}" for p in fig["crashers"]["problems"]]
    for name, r in fig["fuzz"].items():
        if isinstance(r, dict) and (r.get("rc") or r.get("findings")):
            out.append(f"fuzzer {name}: rc {r.get('rc')} findings {r.get('findings')}")
    leak = fig["leak"]
    if "items" in leak:
        if leak["worker_archive_fds_max"] > leak["max_open"] + 1:
            out.append("leak: a worker held more archives open than max_open + 1")
        if leak["worker_fds_end"] > leak["worker_fds_start"] + 16:
            out.append("leak: worker descriptors grew")
        if leak["own_fds_after"] > leak["own_fds_before"] + 1:
            out.append("leak: the main process did not get its descriptors back")
        for who in ("own", "worker"):
            if leak[f"{who}_rss_end"] - leak[f"{who}_rss_start"] > 48 << 20:
                out.append(f"leak: {who} RSS grew by more than 48 MiB")
    return out


def render(fig: dict) -> str:
    sw = fig["sweep"]
    counts = defaultdict(int)
    for key, v in sw["counts"].items():
        kind, fam, status = key.split("|")
        counts[(kind, fam, status)] += v
    kinds = list(S.KINDS)
    fams = list(dict.fromkeys(k[1] for k in counts))
    failures = defaultdict(int)
    for s_name, fam, _lab, _why in sw["failures"]:
        failures[(sw["samples"][s_name]["kind"], fam)] += 1
    problems = problems_of(fig)
    L: list[str] = []
    a = L.append
    a("# Reliability and security campaign")
    a("")
    a(
        "<!-- generated by benchmarks/reliability_report.py (make reliability ARGS=--write-docs); "
        "do not edit by hand -->"
    )
    a("")
    a(begin("reliability"))
    a(
        f"Run of {fig['started']} on {platform.node() or 'this machine'} ({os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, {platform.system()} {platform.release()}); {fig['seconds']:.0f} s in all. "
        f"**Verdict: {'every guarantee held' if not problems else f'{len(problems)} PROBLEMS (listed at the end)'}.**"
    )
    a("")
    a(
        "Masks are clinical data and archives travel between sites: a reader must survive any file, a"
    )
    a(
        "writer must never lose what was stored, and a training job must not leak or deadlock. This page"
    )
    a("is what was tried and what happened. Reproduce it with `make reliability` (which writes")
    a("`bench_output/reliability.md`; `ARGS=--write-docs` rewrites this page); the same checks run")
    a(
        "at a smaller scale in the test suite (`tests/reliability/`, `tests/reliability/test_campaign.py`,"
    )
    a("`tests/reliability/test_fuzz_readers.py`; the long variants with `pytest --runslow`).")
    a("")
    a("## The reader contract")
    a("")
    a(
        "For any file, `load_mask`, `MaskFile.read_cropped`, `MaskArchive(...)` and, per mask, `ar[i]`,"
    )
    a("`ar[name]`, `read_cropped`, `info`, `read_all_mapping` either raise `CorruptFileError`")
    a(
        "(`UnsupportedFormatError` included; at open, or when the damaged mask is read) or return exactly"
    )
    a(
        "what was stored. Nothing else escapes (no `MaskValidationError`, `MemoryError`, `ValueError`,"
    )
    a(
        "`struct.error`, `RecursionError`...), within a time bound, and without allocating beyond what the"
    )
    a("file declares once the declaration has been checked against the file size and the limits")
    a("(`MAX_VOXELS` = 2**36 voxels, `MAX_EXPANSION` = 40,000x for zstd, 1 GiB per index segment).")
    a('Mode `"a"` must refuse a file mode `"r"` rejects, without touching it.')
    a("")
    a("Each variant is checked in a sandboxed worker process: address space capped at")
    a(
        f"{C.ADDRESS_SPACE_CAP >> 30} GiB (`RLIMIT_AS`), peak traced memory (`tracemalloc`) bounded by"
    )
    a(
        f"{mib(C.MEMORY_BOUND)}, {C.TIME_BOUND:.0f} s per file, a worker that dies or hangs is reported and restarted."
    )
    a(
        "Version 2 checksums every byte that matters, so a corrupted version-2 file must never read back"
    )
    a(
        "different data. Version 1 has no checksums: a damaged payload can decode to a different array"
    )
    a(
        '(zstd catches most), an inherent weakness of the legacy layout, for which only "no crash, no'
    )
    a(
        'hang, bounded memory" is required. A *forged* file (checksums recomputed) that is well-formed'
    )
    a("may legitimately read back as what it says; one whose content is invalid must be rejected.")
    a("")
    a("## 1. Hostile and corrupt files")
    a("")
    files = ", ".join(f"{n} ({v['bytes']} B)" for n, v in sw["samples"].items())
    a(
        f"{sw['total']:,} variants of {len(sw['samples'])} sample files ({files}),"
        f" {sw['n_random']} random variants per random family and sample, in {sw['wall']:.0f} s."
    )
    a("")
    head = (
        "| file | family | variants | "
        + " | ".join(c for c, _ in STATUS_COLS)
        + " | contract broken |"
    )
    a(head)
    a("|" + "---|" * (head.count("|") - 1))
    for kind in kinds:
        for fam in fams:
            row = [counts.get((kind, fam, st), 0) for st, _ in STATUS_COLS]
            extra = sum(
                v
                for (k, f, st), v in counts.items()
                if k == kind and f == fam and st in C.FAIL_STATUSES
            )
            total = sum(row) + extra
            if not total:
                continue
            cells = " | ".join(f"{v:,}" if v else "" for v in row)
            a(
                f"| {kind[:-1]} v{kind[-1]} | {fam} | {total:,} | {cells} | {failures.get((kind, fam), 0) or 0} |"
            )
    tot = [sum(v for (k, f, st), v in counts.items() if st == s) for s, _ in STATUS_COLS]
    a(
        f"| **all** | | **{sw['total']:,}** | "
        + " | ".join(f"**{v:,}**" for v in tot)
        + f" | **{len(sw['failures'])}** |"
    )
    a("")
    a(
        "Columns: "
        + "; ".join(f"*{c}*: {t}" for c, t in STATUS_COLS)
        + ". *different* occurs only for"
    )
    a(
        "version 1 (no checksums) and for forged, well-formed files (e.g. a mapping renamed, a larger space);"
    )
    a("never for a corrupted version-2 file.")
    a("")
    a(f"- Slowest file: {sw['max_seconds'] * 1000:.0f} ms ({sw['max_seconds_case']}).")
    a(
        f"- Largest traced allocation while reading one file: {mib(sw['max_peak'])} ({sw['max_peak_case']}); every"
    )
    a("  bomb (1 to 64 GiB claimed) was rejected before allocating.")
    a(
        f"- Largest worker RSS: {sw['worker_max_rss_kib'] / 1024:.0f} MiB; worker crashes or hangs: {sw['worker_restarts']}."
    )
    a("")
    a("Rejected against read, per family (all file kinds together). *must read*: variants the spec")
    a(
        "allows (the untouched samples, and forged files that keep to the spec), all of which must open"
    )
    a("and read; *must reject*: variants with invalid content, all of which must be refused.")
    a("")
    a(
        "| family | variants | rejected at open | partly rejected | read | must read: read | must reject: rejected |"
    )
    a("|---|---|---|---|---|---|---|")
    for fam, r in sw["by_family"].items():
        total = r["rejected"] + r["partly rejected"] + r["read"] + r["failed"]
        a(
            f"| {fam} | {total:,} | {r['rejected']:,} | {r['partly rejected']:,} | {r['read']:,} | "
            f"{r['must_read_ok']:,} / {r['must_read']:,} | {r['must_reject_ok']:,} / {r['must_reject']:,} |"
        )
    a("")
    a("Families:")
    a("")
    for fam in fams:
        a(f"- **{fam}**: {FAMILY_TEXT.get(fam, '')}")
    a("")
    a("## 2. Writers: crash-kill cycles")
    a("")
    a(
        "A child process appends (or replaces the file) in a loop and is killed with SIGKILL after it"
    )
    a(
        "reported 0-4 commits, a random instant into the next one; after each kill the archive must open and"
    )
    a("every mask the child had reported stored must")
    a("read back equal (a replaced file must be the old or the new one, never a mix).")
    a("")
    a("| scenario | kill cycles | masks stored / versions seen | leftover temp files | problems |")
    a("|---|---|---|---|---|")
    for name, r in fig["kill"].items():
        stored = r.get("masks", r.get("versions_seen"))
        a(f"| {name} | {r['cycles']} | {stored} | {r['leftover_temps']} | {len(r['problems'])} |")
    a("")
    a(
        'Leftover temporary files (`.<name>.*.tmp`) are what a killed `mode="w"`/version-1 writer had not'
    )
    a("yet renamed; they are never read, and any later writer of the same name ignores them.")
    a("")
    a("## 3. Writes that fail")
    a("")
    a("| failure | cases | problems | note |")
    a("|---|---|---|---|")
    notes = {
        "RLIMIT_FSIZE (EFBIG)": "append / mode w / save_mask, v1 and v2, child process with SIGXFSZ ignored",
        "512 KiB tmpfs (ENOSPC)": "append until full (completed appends kept), then mode w and save_mask; appends work again once space is freed",
        "permission denied (EACCES)": "read-only folder and files, as an unprivileged user (a child that drops root)",
        "EIO at each write step": "EIO injected at the n-th pwrite/write/fsync/rename/link/ftruncate of one append, for every n",
    }
    for name, r in fig["failing"].items():
        note = notes.get(name, "")
        if r.get("skipped"):
            note = "skipped: " + r["skipped"]
        if "visible_after_failed_fsync" in r:
            note += f" ({r['visible_after_failed_fsync']} case: only the fsync after the commit slot failed, so the mask is visible and the handle knows it)"
        a(f"| {name} | {r['cases']} | {len(r['problems'])} | {note} |")
    a("")
    a(
        "In every case the file read as before (a version-2 archive may keep unreferenced bytes after its"
    )
    a(
        "last commit; the next append drops them), no temporary file was left, and the handle stayed usable."
    )
    a(
        "A mask that fails validation (other grid, duplicate or empty name, not a SegmentationMask) leaves"
    )
    a(
        "the archive untouched (`tests/reliability/test_writers_never_lose_data.py`, `tests/reliability/test_campaign.py`)."
    )
    a("")
    a("## 4. Concurrency")
    a("")
    a(
        "While one process appends, reader processes (threads with their own handle that `refresh()` or"
    )
    a("reopen, plus one process whose threads share a single handle) list and read masks by name,")
    a(
        "position, crop and info; every mask they list must equal what was stored. A second writer is"
    )
    a(
        "tried every 10 appends and must get `ArchiveLockedError`. After each append the writer waits"
    )
    a("until the readers have listed the archive again, so that every commit is seen by a reader.")
    a("")
    a(
        "| version | masks appended | commits seen by a reader | reader processes | threads | opens | refreshes | mask reads | second writer refused | problems |"
    )
    a("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in fig["concurrency"].items():
        a(
            f"| {name} | {r['appended']:,} | {r['commits_seen']:,} | {r['reader_processes']} | "
            f"{r['threads']} | {r['opens']:,} | {r['refreshes']:,} | {r['reads']:,} | "
            f"{r['second_writer_refused']} of {r['second_writer_tries']} | {len(r['problems'])} |"
        )
    a("")
    a(
        "Version 1 appends rewrite the file and rename it into place: an open handle keeps its snapshot"
    )
    a("(`refresh()` re-reads the same, old file); reopening sees the new one.")
    a("")
    a("## 5. Leaks: DataLoader workers over MaskArchiveDataset")
    a("")
    lk = fig["leak"]
    if "items" in lk:
        a(
            f"{lk['items']:,} items in {lk['epochs']} epochs (new workers each epoch), {lk['workers']} workers, "
            f"{lk['archives']} archives with `max_open={lk['max_open']}` (each worker keeps at most that many open and "
            f"closes the least recently used), {lk['samples']} psutil samples, {lk['seconds']:.1f} s."
        )
        a("")
        a("| measure | after warm-up | at the end | bound |")
        a("|---|---|---|---|")
        a(f"| archives open in a worker (max) | | {lk['worker_archive_fds_max']} | max_open + 1 |")
        a(
            f"| descriptors, both workers | {lk['worker_fds_start']} | {lk['worker_fds_end']} | no growth (+16 for torch's IPC) |"
        )
        a(
            f"| RSS, both workers | {mib(lk['worker_rss_start'])} | {mib(lk['worker_rss_end'])} | growth < 48 MiB |"
        )
        a(
            f"| RSS, main process | {mib(lk['own_rss_start'])} | {mib(lk['own_rss_end'])} | growth < 48 MiB |"
        )
        a(
            f"| descriptors, main process | {lk['own_fds_before']} before | {lk['own_fds_after']} after (peak {lk['own_fds_max']}) | back to before |"
        )
        a(f"| peak RSS, main + workers | | {mib(lk['peak_rss_total'])} | |")
    else:
        a(f"Skipped: {lk.get('skipped')}")
    a("")
    a("## 6. Coverage-guided fuzzing")
    a("")
    a(
        "| harness | executions | seconds | coverage (edges) | features | seeds -> corpus | findings |"
    )
    a("|---|---|---|---|---|---|---|")
    for name, r in fig["fuzz"].items():
        if not isinstance(r, dict):
            a(f"| skipped: {r} | | | | | | |")
            continue
        a(
            f"| `{name}` | {r['runs']:,} | {r['seconds']} | {r['cov']} | {r['ft']} | {r['seeds']} -> {r['corpus']} | {len(r['findings'])} |"
        )
    a("")
    a(
        "`tests/reliability/fuzz_forged.py` recomputes every checksum before reading when the input's first byte is"
    )
    a("odd, so its mutations reach the header, JSON and index validation behind the CRCs;")
    a(
        "`tests/reliability/fuzz_readers.py` reads the raw bytes. Both run with a 3 GiB address-space cap and a"
    )
    a("10 s timeout per input. Longer runs (findings go to `tests/fixtures/crashers/` once fixed):")
    a("")
    a("```sh")
    a(
        "mkdir -p /tmp/forged && .venv/bin/python tests/reliability/fuzz_forged.py --make-corpus /tmp/forged"
    )
    a(
        ".venv/bin/python tests/reliability/fuzz_forged.py /tmp/forged -max_total_time=3600 -timeout=10 -rss_limit_mb=3072 -artifact_prefix=/tmp/forged-"
    )
    a(
        ".venv/bin/python tests/reliability/fuzz_readers.py tests/fixtures/fuzz_corpus -max_total_time=3600 -timeout=10 -rss_limit_mb=1024"
    )
    a(
        ".venv/bin/python benchmarks/reliability_report.py --fuzz-seconds 3600 --random 3000   # everything, longer"
    )
    a(".venv/bin/python -m pytest -n 2 --runslow tests/reliability/")
    a("```")
    a("")
    a(
        f"`tests/fixtures/crashers/` holds {fig['crashers']['files']} inputs that once broke a reader; every one is"
    )
    a("replayed in the test suite (as is and with forged checksums) and here: "
      + ("all rejected." if not fig["crashers"]["problems"] else f"{len(fig['crashers']['problems'])} not rejected!"))  # fmt: skip
    a("")
    a("## Bugs this campaign found, and their fixes")
    a("")
    for line in FIXES:
        a(f"- {line}")
    a("")
    a("## Known limits")
    a("")
    for line in LIMITS:
        a(f"- {line}")
    a("")
    if problems:
        a("## Problems in this run")
        a("")
        for p in problems[:200]:
            a(f"- {p}")
        a("")
    a(end("reliability"))
    return "\n".join(L)


FIXES = [
    "**Space volume unchecked** (`medmask/format/base.py`, `read_space`): a space of (2**31-1)**3 voxels "
    "passed, and reading a version-2 mask raised a bare `ValueError`/`MemoryError` from `numpy.zeros`. "
    "Every stored space is now held to `MAX_VOXELS`, like every other declared shape "
    "(crashers `sweep_v2_msk_space_2pow93_voxels.msk`, `sweep_v2_mska_space_2pow37_voxels.mska`).",
    "**Bomb checked only after the full volume was allocated** (`medmask/format/v2.py`, `_entry_from_row`): "
    "a 21-byte blob whose row declared a 2048**3 box made `read_array` allocate 8 GiB before the codec "
    "rejected the claim. The box is now checked against the blob size when the index is read "
    "(crasher `sweep_v2_mska_bomb_row_8GiB.mska`).",
    "**Masks without a space** (`medmask/format/v2.py`, `V2Archive.open`): a commit listing empty masks but no "
    "space section made `read_array` fail with `AttributeError` (crasher `sweep_v2_mska_masks_without_space.mska`).",
    "**Index decompression bomb** (`medmask/format/v2.py`, `V2Archive.open`, `INDEX_MAX_RATIO`): a 32 KiB "
    "index segment of valid JSON padded with 1 GiB of spaces (within the 40,000x zstd bound and the "
    "1 GiB segment limit) took 2.5 s and 2 GiB of memory to open, and a chain may hold 64 segments. A "
    "segment may now decode to at most 1,000x its size (beyond 1 MiB; real indexes compress 30-90x) and "
    "the whole chain to 1 GiB (crasher `sweep_v2_mska_index_whitespace_1GiB.mska`).",
    "**Lock on a replaced file** (`medmask/format/_io.py`, `open_locked`): `open` then `flock` locked the old, "
    'unlinked file when another writer replaced the archive in between (mode "w", or any version-1 append): '
    "every later append went into the orphan and was lost although `add_segmask` returned. The lock is "
    "now checked to be on the file the path names, and retaken otherwise.",
    "**Two writers creating one archive** (`_io.atomic_temp(replace=False)`, `MaskArchive._open_append`): "
    "the second creation renamed an empty archive over the one the first was appending to; creation now "
    'never replaces a file (hard link), and `mode="w"` refuses at close to replace an archive another '
    "writer created and locked meanwhile.",
    "**Version-1 rewrite locked after the rename** (`v1.V1Archive.commit`, formerly `storage._V1Backend.flush(keep_lock=True)`): another "
    "writer could lock the new file first and later rename its stale copy over it; the new file is now "
    "locked before it is renamed into place.",
    "**Temporary file left on a full disk** (`_io.atomic_temp`): closing the temporary file flushed its "
    "buffer again, failed again (ENOSPC/EFBIG) and skipped the cleanup.",
    "**Failed fsync after the commit slot** (`v2.V2Archive.commit`, `MaskArchive.add_segmask`): the commit "
    "was visible but the handle rolled back to the previous one, and its next append overwrote the blob "
    "and index the visible commit pointed at. The in-memory view is now updated before that fsync.",
    "**Export through a planted symlink** (`medmask/nifti.py`, `segmask_to_nifti`, fixed by its owner in "
    "283ddf0): the temporary NIfTI had a predictable name (`.<name>.tmp<pid>.nii.gz`) and was written "
    "through a symlink planted there, overwriting a file outside the target folder "
    "(`tests/reliability/test_path_safety.py`). Mask names themselves never left the folder.",
    "Found at the same time by the older campaign script (now part of tests/reliability/; fixed in the same files): version-1 files accepted "
    "version-2 codec ids; deep JSON nesting raised `RecursionError`; labels that do not fit the dtype "
    "raised `MaskValidationError` from `load_mask`/`ar[...]`; the archive size was read before the slots.",
]

LIMITS = [
    "Version 1 has no checksums: a damaged payload may read back as a different array (the table's "
    "*different* column for v1). Convert to version 2 (`medmask convert`) for archives that travel.",
    "A version-2 full-volume read allocates the whole declared volume (up to `MAX_VOXELS` = 2**36 voxels) "
    "even for a small mask: a legitimate file may do so; `read_cropped` allocates only the box.",
    "Opening a hostile version-2 archive may still parse up to 1 GiB of index JSON, but only from at "
    "least 1 MiB of stored index (1,000x), so the cost is bounded by the file's size.",
    "Bytes after the zstd frame of a blob are ignored (the stored array still reads back exactly).",
    '`mode="w"` on a path where no file exists takes no lock until it closes: two such writers both '
    "succeed and the last rename wins (each file is complete).",
    "The `.msk` v2 header's reserved `flags` field is not checked (the `.mska` preamble's is).",
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--out", type=Path, default=REPO / "bench_output" / "reliability.md", help="the page"
    )
    ap.add_argument(
        "--write-docs", action="store_true", help="write docs/reliability.md (instead of --out)"
    )
    ap.add_argument("--json", type=Path, help="also write the raw figures here")
    ap.add_argument("--quick", action="store_true", help="small scale (about a minute)")
    ap.add_argument(
        "--random", type=int, default=600, help="random variants per random family and sample"
    )
    ap.add_argument("--kill-cycles", type=int, default=300)
    ap.add_argument("--replace-cycles", type=int, default=100)
    ap.add_argument("--concurrency-appends", type=int, default=400)
    ap.add_argument("--leak-items", type=int, default=2000, help="items per epoch")
    ap.add_argument("--fuzz-seconds", type=int, default=90, help="per fuzzer")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.write_docs:
        args.out = REPO / "docs" / "reliability.md"
    with tempfile.TemporaryDirectory(prefix="medmask-reliability-") as tmp:
        fig = run_all(args, Path(tmp))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(fig) + "\n", encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps(fig, indent=1, default=str), encoding="utf-8")
    problems = problems_of(fig)
    print(f"wrote {args.out}; {len(problems)} problems; {fig['seconds']:.0f} s")
    for p in problems[:50]:
        print("  ", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
