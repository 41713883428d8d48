"""The files the documentation's examples work on, built from the sample data the tests have.

Each document runs in a folder of its own holding what its text says the reader has:

* ``s0000/``: the real TotalSegmentator case in TotalSegmentator's layout
  (``s0000/segmentations/<organ>.nii.gz``, links to ``../shared/data/totalseg_s0000``,
  beside a synthetic ``s0000/ct.nii.gz`` on its grid); ``s0000.mska``: the case packed;
* ``../shared/data/totalseg_s0000``: the real case where the README says it is;
* ``dataset/``, ``DATASET/``, ``Totalsegmentator_dataset/``: phantom datasets
  (:func:`medmask.phantoms.write_phantom_dataset`, both layouts);
* ``packed/``: ``s0000.mska`` and ``s0001.mska`` (a phantom case without a urinary bladder);
* ``ds/s0000/``: the real case with ``ct.nii.gz`` and its label map ``labels.nii.gz``
  (``classes.json`` its table); for nifti.md the same two files in the folder itself;
* for interop.md: ``Segmentation.seg.nrrd`` (3D Slicer's sample when present), a CT series
  ``CT/`` on the real case's grid and its SEG ``seg.dcm``, a FRACTIONAL ``fractional.dcm``,
  the label maps ``s0000_ml.nii.gz`` (TotalSegmentator's header) and ``labels.nii.gz`` (none)
  with ``itksnap_labels.txt``, ``partial.json``, ``dataset.json`` and ``organs.json``.

Masters are built once per session and linked (read-only inputs) or copied into each
document's folder.
"""

from __future__ import annotations

import functools
import json
import shutil
import sys
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parents[1]
#: The organs of the small tables (present in the real case).
ORGANS = {"colon": 1, "urinary_bladder": 2, "femur_left": 3, "femur_right": 3}


class Assets:
    """The session's masters, built on first use."""

    def __init__(self, root: Path, real_case: Path) -> None:
        self.root = root
        self.real = real_case

    @functools.cached_property
    def case(self) -> Path:
        """``s0000/``: segmentations/ (links) and ct.nii.gz."""
        import nibabel as nib

        d = self.root / "s0000"
        (d / "segmentations").mkdir(parents=True)
        for f in sorted(self.real.glob("*.nii.gz")):
            (d / "segmentations" / f.name).symlink_to(f)
        ref = nib.load(str(self.real / "colon.nii.gz"))
        ct = np.random.default_rng(0).integers(-1000, 1500, ref.shape).astype(np.int16)
        nib.save(nib.Nifti1Image(ct, ref.affine, ref.header), str(d / "ct.nii.gz"))
        return d

    @functools.cached_property
    def archive(self) -> Path:
        from medmask.conversions import to_archive

        out = self.root / "s0000.mska"
        to_archive(self.real, out)
        return out

    @functools.cached_property
    def packed(self) -> Path:
        from medmask import MaskArchive
        from medmask.phantoms import phantom_case

        d = self.root / "packed"
        d.mkdir()
        shutil.copy(self.archive, d / "s0000.mska")
        masks, space = phantom_case(1)
        with MaskArchive(d / "s0001.mska", "w", space=space) as ar:
            for name, m in masks.items():
                if name != "urinary_bladder":
                    ar.add(name, m)
        return d

    @functools.cached_property
    def labelmap(self) -> tuple[Path, dict[str, int]]:
        """The real case as one label map with TotalSegmentator's header, and its table."""
        from medmask.conversions import from_archive

        out = self.root / "maps" / "s0000_ml.nii.gz"
        out.parent.mkdir()
        from_archive(self.archive, out, overlap="smaller")
        return out, json.loads(out.with_name("s0000_ml.json").read_text())

    @functools.cached_property
    def ct_series(self) -> Path:
        sys.path.insert(0, str(TESTS))
        from interop_support import write_ct_series

        from medmask import MaskArchive

        with MaskArchive(self.archive) as ar:
            space = ar.space
        write_ct_series(self.root / "CT", space)
        return self.root / "CT"

    @functools.cached_property
    def seg(self) -> Path:
        from medmask.conversions import from_archive

        out = self.root / "seg.dcm"
        from_archive(self.archive, out, source=self.ct_series)
        return out

    @functools.cached_property
    def fractional(self) -> Path:
        sys.path.insert(0, str(TESTS))
        from interop_support import highdicom_seg, oblique_space, write_ct_series

        space = oblique_space((6, 10, 12))
        series = write_ct_series(self.root / "frac_ct", space)[0].parent
        prob = np.zeros(space.shape, np.float32)
        prob[1:5, 2:8, 3:9] = 0.3
        prob[2:4, 3:7, 4:8] = 0.8
        return highdicom_seg(
            series,
            [prob > 0],
            ["lesion"],
            self.root / "fractional.dcm",
            seg_type="FRACTIONAL",
            fractional=[prob],
        )

    @functools.cached_property
    def slicer(self) -> Path:
        sample = self.real.parent / "interchange" / "Segmentation.seg.nrrd"
        if sample.is_file():
            return sample
        from medmask.conversions import from_archive

        out = self.root / "Segmentation.seg.nrrd"
        from_archive(self.archive, out, names=list(ORGANS))
        return out


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src.resolve())


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copy(src, dst)


def _phantoms(where: Path) -> None:
    from medmask.phantoms import write_phantom_dataset

    write_phantom_dataset(where, layout="mixed")


def _interop(a: Assets, work: Path) -> None:
    import nibabel as nib

    _copy(a.slicer, work / "Segmentation.seg.nrrd")
    _link(a.ct_series, work / "CT")
    _copy(a.seg, work / "seg.dcm")
    _copy(a.fractional, work / "fractional.dcm")
    _copy(a.archive, work / "s0000.mska")
    _copy(a.archive, work / "packed" / "s0000.mska")
    ml, table = a.labelmap
    _copy(ml, work / "s0000_ml.nii.gz")
    img = nib.load(str(ml))
    plain = nib.Nifti1Image(np.asarray(img.dataobj), img.affine)  # no header table
    nib.save(plain, str(work / "labels.nii.gz"))
    lines = ['0 0 0 0 0 0 0 "Clear Label"']
    lines += [f'{v} {40 + v} {200 - v} 90 1 1 1 "{n}"' for n, v in table.items()]
    (work / "itksnap_labels.txt").write_text("\n".join(lines) + "\n")
    partial = {n: v for n, v in table.items() if n in ORGANS}
    (work / "partial.json").write_text(json.dumps(partial))
    labels = {"background": 0, **ORGANS}
    (work / "dataset.json").write_text(json.dumps({"labels": labels, "file_ending": ".nii.gz"}))
    (work / "organs.json").write_text(json.dumps({"colon": 1, "urinary_bladder": 2}))


def _ds(a: Assets, work: Path) -> None:
    case = work / "ds" / "s0000"
    for f in sorted((a.case / "segmentations").iterdir()):  # a real folder: os.walk sees it
        _link(f, case / "segmentations" / f.name)
    _link(a.case / "ct.nii.gz", case / "ct.nii.gz")
    _labels(a, case)
    (case / "classes.json").rename(work / "classes.json")


def _labels(a: Assets, where: Path) -> None:
    """``labels.nii.gz`` (the real case's label map) and ``classes.json`` (its table)."""
    ml, table = a.labelmap
    _copy(ml, where / "labels.nii.gz")
    (where / "classes.json").write_text(json.dumps(table))


#: What each document's folder holds (see the module docstring).
SETUP = {
    "README.md": ("real", "DATASET"),
    "docs/cli.md": ("s0000", "dataset"),
    "docs/distributed.md": ("Totalsegmentator_dataset",),
    "docs/interop.md": ("interop",),
    "docs/monai.md": ("s0000", "ds"),
    "docs/nifti.md": ("s0000", "labels"),
    "docs/stats.md": ("s0000", "s0000.mska", "packed"),
    "docs/remote.md": ("packed",),
}


def prepare(doc: str, work: Path, assets: Assets) -> None:
    """Fill ``work`` (the document's working folder) with what ``doc`` works on."""
    work.mkdir(parents=True)
    for item in SETUP.get(doc, ()):
        if item == "real":  # the README's relative path to the sample case
            _link(assets.real, work.parent / "shared" / "data" / "totalseg_s0000")
        elif item in ("dataset", "DATASET", "Totalsegmentator_dataset"):
            _phantoms(work / item)
        elif item == "s0000":
            _link(assets.case, work / "s0000")
        elif item == "s0000.mska":
            _copy(assets.archive, work / "s0000.mska")
        elif item == "packed":
            _copy(assets.packed, work / "packed")
        elif item == "ds":
            _ds(assets, work)
        elif item == "labels":
            _labels(assets, work)
        elif item == "interop":
            _interop(assets, work)
        else:  # pragma: no cover - a new entry of SETUP without a builder
            raise KeyError(item)
