"""Foreign files are called by what they are (issue 22, item 3).

A NIfTI, a Slicer segmentation or a DICOM file handed to a medmask reader is not damaged:
it raises ForeignFileError (not CorruptFileError) naming the format and `medmask pack`;
the command line says the same and prints no empty table. A damaged medmask file stays a
CorruptFileError.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medmask import MaskArchive, MaskFile, SegmentationMask, load_mask
from medmask.conversions import from_archive
from medmask.errors import CorruptFileError, ForeignFileError
from medmask.geometry import affine_to_space
from medmask.inspect import file_info, is_archive, list_masks

EXE = shutil.which("medmask", path=str(Path(sys.executable).parent))
AFF = np.diag([-1.5, -1.5, 2.0, 1.0])


def run(*args):
    cmd = [EXE, *map(str, args)] if EXE else [sys.executable, "-m", "medmask", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("foreign")
    data = np.zeros((12, 10, 8), np.uint8)
    data[2:6, 3:7, 1:5] = 1
    nib.save(nib.Nifti1Image(data, AFF), str(d / "colon.nii.gz"))
    nib.save(nib.Nifti1Image(data, AFF), str(d / "colon.nii"))
    space = affine_to_space(AFF, data.shape)
    with MaskArchive(d / "case.mska", "w", space=space) as ar:
        ar.add("colon", SegmentationMask(data.transpose(2, 1, 0) > 0, {"colon": 1}, space))
    from_archive(d / "case.mska", d / "Segmentation.seg.nrrd")
    (d / "damaged.mska").write_bytes(b"MSKA\x02\x01" + b"\x00" * 40)
    (d / "junk.mska").write_bytes(b"\x00\x07junk" * 20)
    return d


FOREIGN = [
    ("colon.nii.gz", "nifti", "NIfTI image"),
    ("colon.nii", "nifti", "NIfTI image"),
    ("Segmentation.seg.nrrd", "seg.nrrd", "3D Slicer segmentation"),
]


@pytest.mark.parametrize(("name", "kind", "title"), FOREIGN)
def test_readers_name_the_format_and_how_to_convert_it(files, name, kind, title):
    path = files / name
    for read in (MaskArchive, load_mask, lambda p: MaskFile(p).read(), file_info, list_masks):
        with pytest.raises(ForeignFileError) as err:
            read(path)
        assert not isinstance(err.value, CorruptFileError)
        assert err.value.kind == kind and err.value.path == str(path)
        text = str(err.value)
        assert f"this is a {title}" in text and "not a medmask file" in text
        assert f"medmask pack {path} -o OUT.mska" in text
    assert is_archive(path) is False


def test_a_damaged_medmask_file_stays_corrupt(files):
    with pytest.raises(CorruptFileError):
        MaskArchive(files / "damaged.mska")
    with pytest.raises(CorruptFileError, match="not a medmask file") as err:  # unknown bytes
        MaskArchive(files / "junk.mska")
    assert not isinstance(err.value, ForeignFileError)


def test_a_dicom_image_is_named_with_what_to_do(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from interop_support import oblique_space, write_ct_series

    ct = write_ct_series(tmp_path / "ct", oblique_space((2, 4, 5)))[0]
    with pytest.raises(ForeignFileError, match="this is a DICOM image, not a SEG") as err:
        MaskArchive(ct)
    assert err.value.kind == "dicom" and "--reference" in str(err.value)


def test_ls_and_info_say_what_the_file_is_and_print_no_empty_table(files):
    nii, nrrd = files / "colon.nii.gz", files / "Segmentation.seg.nrrd"
    r = run("ls", nii)
    assert r.returncode == 1
    assert r.stdout == ""  # no table header without rows
    assert f"{nii}: this is a NIfTI image" in r.stderr
    assert f"convert it with `medmask pack {nii} -o OUT.mska`" in r.stderr
    r = run("info", nrrd)
    assert r.returncode == 1 and r.stdout == ""
    assert f"{nrrd}: this is a 3D Slicer segmentation, not a medmask file" in r.stderr
    assert "field 'magic'" not in r.stderr and "magic b'" not in r.stderr
