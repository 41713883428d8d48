"""to_archive / from_archive take Targets: a foreign file at a URL is fetched, an archive at a
URL is read or uploaded whole, and folders stay local (said clearly)."""

from __future__ import annotations

import numpy as np
import pytest

from medmask import MaskArchive
from medmask.cli import main
from medmask.conversions import from_archive, to_archive
from medmask.errors import MaskValidationError
from medmask.io import Target

nib = pytest.importorskip("nibabel")
fsspec = pytest.importorskip("fsspec")


def put(url: str, data: bytes) -> None:
    with fsspec.open(url, "wb") as fh:
        fh.write(data)


def get(url: str) -> bytes:
    with fsspec.open(url, "rb") as fh:
        return fh.read()


@pytest.fixture
def label_map(tmp_path):
    lab = np.zeros((6, 5, 4), np.uint8)
    lab[1:3, 1:4, 1:3] = 1
    lab[3:5, 2:4, 1:4] = 2
    path = tmp_path / "lm.nii.gz"
    nib.save(nib.Nifti1Image(lab, np.diag([0.8, 0.8, 2.0, 1.0])), str(path))
    (tmp_path / "t.json").write_text('{"liver": 1, "spleen": 2}')
    return path, lab


def test_pack_a_url_source_into_a_url_archive_and_back(label_map, tmp_path):
    path, lab = label_map
    put("memory://conv/in/lm.nii.gz", path.read_bytes())
    report = to_archive(
        "memory://conv/in/lm.nii.gz",
        Target.of("memory://conv/out/a.mska"),
        labels={"liver": 1} | {"spleen": 2},
    )
    assert report.masks == ["liver", "spleen"] and report.source == "memory://conv/in/lm.nii.gz"
    (tmp_path / "a.mska").write_bytes(get("memory://conv/out/a.mska"))
    with MaskArchive(tmp_path / "a.mska") as ar:
        np.testing.assert_array_equal(ar.read_array("spleen"), (lab == 2).transpose(2, 1, 0))
    res = from_archive("memory://conv/out/a.mska", "memory://conv/out/back.nii.gz")
    assert res.masks == ["liver", "spleen"]
    (tmp_path / "back.nii.gz").write_bytes(get("memory://conv/out/back.nii.gz"))
    np.testing.assert_array_equal(np.asarray(nib.load(tmp_path / "back.nii.gz").dataobj), lab)
    assert get("memory://conv/out/back.json") == b'{\n "liver": 1,\n "spleen": 2\n}\n'
    from_archive("memory://conv/out/a.mska", tmp_path / "folder")  # a local folder: fine
    assert sorted(p.name for p in (tmp_path / "folder").iterdir()) == [
        "liver.nii.gz",
        "spleen.nii.gz",
    ]


def test_folders_at_urls_are_refused_clearly(label_map, tmp_path):
    path, _ = label_map
    to_archive(path, tmp_path / "a.mska", labels=tmp_path / "t.json")
    with pytest.raises(MaskValidationError, match="local file system"):
        from_archive(tmp_path / "a.mska", "memory://conv/dir/")
    with pytest.raises(MaskValidationError, match="local file system"):
        to_archive("memory://conv/in/", tmp_path / "b.mska")
    with pytest.raises(FileNotFoundError):
        from_archive("memory://conv/none.mska", tmp_path / "x.nii.gz")


def test_cli_storage_options_reach_the_targets(label_map, tmp_path, s3):
    """``--storage-option`` is parsed once into the Targets of pack and unpack (S3 on moto)."""
    path, lab = label_map
    src = s3.put("in/lm.nii.gz", path.read_bytes())
    endpoint = s3.storage_options["client_kwargs"]["endpoint_url"]
    opt = ["--storage-option", f"client_kwargs.endpoint_url={endpoint}"]
    table = ["--labels", str(tmp_path / "t.json")]
    assert main(["pack", src, *table, "-o", s3.url("out/a.mska"), "-q", *opt]) == 0
    assert s3.get("out/a.mska")[:4] == b"MSKA"
    assert main(["unpack", s3.url("out/a.mska"), "-o", s3.url("out/b.nii.gz"), "-q", *opt]) == 0
    (tmp_path / "b.nii.gz").write_bytes(s3.get("out/b.nii.gz"))
    np.testing.assert_array_equal(np.asarray(nib.load(tmp_path / "b.nii.gz").dataobj), lab)
    assert s3.keys("out/") == ["out/a.mska", "out/b.json", "out/b.nii.gz"]
