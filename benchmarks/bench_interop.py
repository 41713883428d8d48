"""Interchange speed on the real case, measured in one run (medians).

1. The real TotalSegmentator case (``../shared/data/totalseg_s0000``, 117 masks) packed to
   ``.mska``; a CT series generated with pydicom on the case's grid (oblique affine, one
   file per slice); the archive exported as one DICOM SEG of 117 segments (BINARY):
   ``medmask unpack -o X.dcm --source CT/`` against highdicom's ``Segmentation`` built from
   the same masks (given segment-major, the layout its constructor reads fastest) and
   saved, both read back equal to the archive first. Then ``medmask pack`` of that SEG
   against highdicom's ``segread`` + ``get_volume`` for every segment (and, for reference,
   one ``get_volume`` of all segments at once), and both sizes on disk.
2. The real case as a ``.seg.nrrd`` (overlaps in layers): medmask's unpack and pack against
   slicerio's write and read.

Usage::

    .venv/bin/python benchmarks/bench_interop.py            # writes bench_output/interop.md
    .venv/bin/python benchmarks/bench_interop.py --repeat 5 --out bench_output/interop.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from _check import require, require_equal  # noqa: E402
from _regions import region  # noqa: E402

#: The real case (env ``MEDMASK_REAL_CASE`` points elsewhere).
REAL_CASE = Path(
    os.environ.get("MEDMASK_REAL_CASE", HERE.parent.parent / "shared" / "data" / "totalseg_s0000")
)


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def same_archives(a_path: Path, b_path: Path, what: str) -> None:
    """Two archives hold the same masks, in the same order, voxel for voxel.

    Raises:
        OutputsDiffer: A name or a mask differs.
    """
    from medmask import MaskArchive

    with MaskArchive(a_path) as a, MaskArchive(b_path) as b:
        require(a.all_names() == b.all_names(), f"{what}: other names")
        for k in b.all_names():
            require_equal(f"{what}: {k}", a.read_array(k), b.read_array(k))


def voxels_per_name(archive: Path) -> dict[str, int]:
    from medmask import MaskArchive

    with MaskArchive(archive) as ar:
        return {k: int(ar.read_array(k).astype(bool).sum()) for k in ar.all_names()}


def _highdicom_export(archive: Path, ct: Path, out: Path) -> None:
    """The same BINARY SEG built with highdicom: the masks read from the archive, stacked
    segment-major (``(segments, frames, rows, columns)``, viewed as highdicom's
    ``(frames, rows, columns, segments)``), the source series' headers, one description
    per mask, the constructor, ``save_as``."""
    import highdicom as hd
    import numpy as np
    import pydicom
    from pydicom.sr.codedict import codes

    from medmask import MaskArchive
    from medmask.conversions.dicom_seg import read_series_geometry

    series = read_series_geometry(ct, headers_only=True)
    with MaskArchive(archive) as ar:
        names = ar.all_names()
        stack = np.zeros((len(names), *(int(v) for v in ar.space.shape)), bool)
        for k, n in enumerate(names):
            stack[k] = ar.read_array(n)
    descs = [
        hd.seg.SegmentDescription(
            segment_number=k + 1,
            segment_label=n,
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )
        for k, n in enumerate(names)
    ]
    seg = hd.seg.Segmentation(
        source_images=series.datasets,
        pixel_array=np.moveaxis(stack[:, series.z_index], 0, -1),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descs,
        series_instance_uid=hd.UID(),
        series_number=900,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="bench",
        manufacturer_model_name="bench",
        software_versions="1",
        device_serial_number="0",
    )
    seg.save_as(out)
    del pydicom


def export_rows(tmp: Path, repeat: int) -> list[tuple[str, str]]:
    """``medmask unpack -o X.dcm`` against highdicom building the same SEG, after checking
    that both read back (with the series as reference) equal to the archive."""

    from medmask.conversions import from_archive, to_archive

    def medmask_export() -> None:
        from_archive(tmp / "case.mska", tmp / "case_seg.dcm", source=tmp / "ct")

    def highdicom_export() -> None:
        _highdicom_export(tmp / "case.mska", tmp / "ct", tmp / "hd_seg.dcm")

    medmask_export()
    highdicom_export()
    for seg in ("case_seg.dcm", "hd_seg.dcm"):
        to_archive(tmp / seg, tmp / "check.mska", reference=tmp / "ct")
        same_archives(tmp / "check.mska", tmp / "case.mska", f"{seg} -> .mska (--reference)")
    t_mm, _ = timed(medmask_export, repeat)
    t_hd, _ = timed(highdicom_export, repeat)
    print(f"SEG export: medmask {t_mm:.2f} s, highdicom {t_hd:.2f} s", file=sys.stderr)
    return [
        (
            "`medmask unpack -o case_seg.dcm --source CT/` (archive -> BINARY SEG)",
            f"{t_mm * 1000:.0f} ms",
        ),
        (
            "highdicom `Segmentation(...)` + `save_as` of the same SEG (masks segment-major)",
            f"{t_hd * 1000:.0f} ms",
        ),
        ("**speed-up** (highdicom / medmask export)", f"**{t_hd / t_mm:.1f}x**"),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--case", type=Path, default=REAL_CASE, help="folder of NIfTI masks")
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    ap.add_argument("--out", type=Path, default=Path("bench_output") / "interop.md")
    args = ap.parse_args(argv)
    if not args.case.is_dir():
        print(f"real case not found at {args.case}", file=sys.stderr)
        return 1

    import highdicom as hd
    import numpy as np
    import slicerio
    from interop_support import write_ct_series

    from medmask import MaskArchive
    from medmask.conversions import from_archive, to_archive

    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        to_archive(args.case, tmp / "case.mska")
        with MaskArchive(tmp / "case.mska") as ar:
            space, n = ar.space, len(ar)
        print(f"case: {n} masks on {tuple(space.shape)} (z, y, x)", file=sys.stderr)
        write_ct_series(tmp / "ct", space)
        rows += export_rows(tmp, args.repeat)
        seg_bytes = (tmp / "case_seg.dcm").stat().st_size
        mska_bytes = (tmp / "case.mska").stat().st_size

        def medmask_pack() -> None:
            to_archive(tmp / "case_seg.dcm", tmp / "from_seg.mska")

        def hd_each() -> dict[str, int]:
            seg = hd.seg.segread(str(tmp / "case_seg.dcm"))
            out = {}
            for num in seg.segment_numbers:
                name = seg.get_segment_description(num).segment_label
                out[name] = int(seg.get_volume(segment_numbers=[num]).array.sum())
            return out

        def hd_all() -> int:
            seg = hd.seg.segread(str(tmp / "case_seg.dcm"))
            return int(seg.get_volume().array.sum())

        def medmask_pack_ref() -> None:
            to_archive(tmp / "case_seg.dcm", tmp / "from_seg_ref.mska", reference=tmp / "ct")

        # before timing: medmask reads from the SEG what highdicom reads, and the source
        medmask_pack()
        medmask_pack_ref()
        same_archives(tmp / "from_seg_ref.mska", tmp / "case.mska", "SEG -> .mska (--reference)")
        by_hd, by_mm = hd_each(), voxels_per_name(tmp / "from_seg.mska")
        require(by_mm == by_hd, "voxels per segment: medmask's SEG reading against highdicom's")
        require(hd_all() == sum(by_hd.values()), "highdicom: all segments against each one")
        t_mm, _ = timed(medmask_pack, args.repeat)
        t_mm_ref, _ = timed(medmask_pack_ref, args.repeat)
        t_hd, _ = timed(hd_each, args.repeat)
        t_hd_all, _ = timed(hd_all, args.repeat)

        rows += [
            ("DICOM SEG of the real case (117 segments, BINARY)", f"{seg_bytes:,} bytes"),
            (".mska of the same masks", f"{mska_bytes:,} bytes"),
            ("`medmask pack case_seg.dcm` (read + write .mska)", f"{t_mm * 1000:.0f} ms"),
            (
                "`medmask pack case_seg.dcm --reference CT/` (full grid; reads 179 CT headers)",
                f"{t_mm_ref * 1000:.0f} ms",
            ),
            ("highdicom `segread` + `get_volume` per segment (117 calls)", f"{t_hd * 1000:.0f} ms"),
            ("highdicom `segread` + one `get_volume` of all segments", f"{t_hd_all * 1000:.0f} ms"),
            ("**speed-up** (per-segment highdicom / medmask pack)", f"**{t_hd / t_mm:.1f}x**"),
            ("speed-up against one `get_volume` of all segments", f"{t_hd_all / t_mm:.1f}x"),
        ]

        def mm_unpack_nrrd() -> None:
            from_archive(tmp / "case.mska", tmp / "case.seg.nrrd")

        def mm_pack_nrrd() -> None:
            to_archive(tmp / "case.seg.nrrd", tmp / "from_nrrd.mska")

        # before timing: the .seg.nrrd round trip is exact, and slicerio reads its segments
        mm_unpack_nrrd()
        mm_pack_nrrd()
        same_archives(tmp / "from_nrrd.mska", tmp / "case.mska", ".seg.nrrd -> .mska")
        segmentation = slicerio.read_segmentation(str(tmp / "case.seg.nrrd"))
        vox = segmentation["voxels"]
        layers = vox.shape[0] if vox.ndim == 4 else 1
        by_slicer = {}
        for seg in segmentation["segments"]:
            layer = vox[seg.get("layer", 0)] if vox.ndim == 4 else vox
            by_slicer[seg["name"]] = int(np.count_nonzero(layer == seg["labelValue"]))
        require(
            by_slicer == voxels_per_name(tmp / "case.mska"),
            "voxels per segment: slicerio's reading of medmask's .seg.nrrd against the archive",
        )
        t_unpack, _ = timed(mm_unpack_nrrd, args.repeat)
        t_pack, _ = timed(mm_pack_nrrd, args.repeat)
        t_sread, _ = timed(
            lambda: slicerio.read_segmentation(str(tmp / "case.seg.nrrd")), args.repeat
        )
        t_swrite, _ = timed(
            lambda: slicerio.write_segmentation(str(tmp / "slicerio.seg.nrrd"), segmentation),
            args.repeat,
        )
        same_archives(tmp / "from_nrrd.mska", tmp / "case.mska", ".seg.nrrd -> .mska, timed")
        rows += [
            (
                f".seg.nrrd of the real case ({layers} layers, gzip level 1)",
                f"{(tmp / 'case.seg.nrrd').stat().st_size:,} bytes",
            ),
            (
                "`medmask unpack -o case.seg.nrrd` (archive -> .seg.nrrd)",
                f"{t_unpack * 1000:.0f} ms",
            ),
            (
                "slicerio `write_segmentation` (in-memory -> .seg.nrrd, its default gzip level)",
                f"{t_swrite * 1000:.0f} ms",
            ),
            ("`medmask pack case.seg.nrrd` (.seg.nrrd -> archive)", f"{t_pack * 1000:.0f} ms"),
            ("slicerio `read_segmentation` (.seg.nrrd -> in-memory)", f"{t_sread * 1000:.0f} ms"),
        ]
    head = (
        f"Interchange on the real case ({n} masks, {tuple(int(s) for s in space.shape)} z, y, x), "
        f"medians of {args.repeat} runs, {platform.machine()} / Python {platform.python_version()}, "
        f"highdicom {hd.__version__}\n\n| what | figure |\n| --- | ---: |\n"
    )
    table = region("interop", head + "".join(f"| {a} | {b} |\n" for a, b in rows)) + "\n"
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
