"""medmask.io.names: what a path or URL says by its name, read from the format table."""

from __future__ import annotations

from pathlib import Path

import pytest

from medmask.errors import MaskValidationError
from medmask.io.formats import FileFormat, register_format, unregister_format
from medmask.io.names import FORMAT_SUFFIXES, expect_name, format_from_name, is_url, split_suffix


@pytest.mark.parametrize(
    ("name", "stem", "suffix"),
    [
        ("/data/s0000_ml.nii.gz", "s0000_ml", ".nii.gz"),
        ("case.seg.nrrd", "case", ".seg.nrrd"),
        ("image.nrrd", "image", ".nrrd"),
        ("archive.tar.gz", "archive.tar", ".gz"),
        ("s3://bucket/a/case.MSKA", "case", ".MSKA"),
        ("s3://bucket/a/case.mska?versionId=3#x", "case", ".mska"),
        ("https://host/a/", "a", ""),
        ("noext", "noext", ""),
        (".nii.gz", ".nii", ".gz"),  # a name is never all suffix
        ("x.unknown", "x", ".unknown"),
        (Path("/tmp/seg.dcm"), "seg", ".dcm"),
    ],
)
def test_split_suffix_keeps_compound_suffixes_whole(name, stem, suffix):
    assert split_suffix(name) == (stem, suffix)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a.mska", "mska"),
        ("A.MSK", "msk"),
        ("x.nii", "nifti"),
        ("x.Nii.Gz", "nifti"),
        ("x.seg.nrrd", "seg.nrrd"),
        ("x.nhdr", "nrrd"),
        ("x.dcm", "dicom-seg"),  # a .dcm output is a SEG: the first entry claiming .dcm
        ("x.gz", "gzip"),
        ("x.zip", "zip"),
        ("stats.parquet", "parquet"),
        ("x.png", "png"),
        ("x", None),
        ("x.txt", None),
        ("memory://b/c.json", "json"),
    ],
)
def test_format_from_name(name, kind):
    assert format_from_name(name) == kind


def test_expect_name_says_the_right_name():
    expect_name("out.mska", "mska")
    expect_name("s3://b/out.nii.gz", "nifti")
    with pytest.raises(MaskValidationError, match=r"names a nifti file.*'out\.mska'"):
        expect_name("out.nii.gz", "mska", what="archive")
    with pytest.raises(MaskValidationError, match=r"has no suffix.*'out\.seg\.nrrd'"):
        expect_name("out", "seg.nrrd")
    with pytest.raises(MaskValidationError, match=r"unknown suffix '\.txt'.*'out\.png'"):
        expect_name("out.txt", "png", what="picture")


def test_is_url():
    assert is_url("s3://b/k") and is_url("file:///tmp/x") and is_url("memory://x")
    assert not is_url("/tmp/x") and not is_url("c:\\data\\x") and not is_url(Path("s3:/b"))
    assert not is_url("relative/s3://x")


class _Masks(FileFormat):
    kind = "test-masks"
    title = "test masks"
    suffixes = (".tmasks.json", ".tmasks")


def test_names_follow_the_table_as_it_changes():
    assert "test-masks" not in FORMAT_SUFFIXES
    assert split_suffix("a.tmasks.json") == ("a.tmasks", ".json")
    register_format(_Masks())
    try:
        assert FORMAT_SUFFIXES["test-masks"] == (".tmasks.json", ".tmasks")
        assert split_suffix("a.tmasks.json") == ("a", ".tmasks.json")
        assert format_from_name("a.tmasks.json") == "test-masks"
        assert format_from_name("a.json") == "json"
        with pytest.raises(MaskValidationError, match=r"'a\.tmasks\.json'"):
            expect_name("a.nii.gz", "test-masks")
    finally:
        unregister_format("test-masks")
    assert "test-masks" not in FORMAT_SUFFIXES and format_from_name("a.tmasks") is None
    assert split_suffix("a.tmasks.json") == ("a.tmasks", ".json")


def test_register_refuses_bad_entries():
    with pytest.raises(TypeError):
        register_format(_Masks)  # the class, not an instance
    with pytest.raises(ValueError, match="already registered"):
        register_format(type("Nifti2", (FileFormat,), {"kind": "nifti", "title": "x"})())
    with pytest.raises(ValueError, match="lower case"):
        register_format(type("Bad", (FileFormat,), {"kind": "bad", "suffixes": (".BAD",)})())
    with pytest.raises(ValueError, match="kind"):
        register_format(FileFormat())
