"""Direct tests of public names that were only used in passing (issue 23, item 9): the codec
registry, ``__version__``, ``LabelMapping.max_label``, ``SelectLabels.new_labels``,
``medmask.inspect.space_fields`` and the ``medmask.io`` helpers. (Every name of the
packages' ``__all__`` is referenced by a test: tests/architecture/test_public_names_are_tested.py.)
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import medmask
from medmask import LabelMapping, MaskArchive, SegmentationMask
from medmask import codecs as codecs_module
from medmask.errors import MaskValidationError, UnsupportedFormatError
from medmask.inspect import space_fields
from medmask.io import Target, expect_name, format_from_name, is_url, split_suffix
from medmask.nifti import affine_to_space, space_to_affine
from medmask.spaces import Space

REPO = Path(__file__).resolve().parents[2]


# -- the codec registry ----------------------------------------------------------------------
def test_available_codecs_lists_the_built_in_ones_and_get_codec_resolves_them():
    names = medmask.available_codecs()
    assert len(set(names)) == len(names)
    assert {"bitzstd", "zstd"} <= set(names)
    for name in names:
        codec = medmask.get_codec(name)
        assert codec.name == name and medmask.get_codec(codec) is codec
    assert medmask.get_codec(None) is medmask.get_codec(codecs_module.DEFAULT_CODEC)
    with pytest.raises(MaskValidationError, match="nope") as ei:
        medmask.get_codec("nope")
    assert all(n in str(ei.value) for n in ("bitzstd", "zstd"))  # says what exists


class _Copy(codecs_module.ZstdCodec):
    """A codec that differs from zstd only by its name and id."""

    name = "test-copy"
    codec_id = 200


@pytest.fixture
def registry(monkeypatch):
    """The registry as it is, restored after the test."""
    monkeypatch.setattr(codecs_module, "_BY_NAME", dict(codecs_module._BY_NAME))
    monkeypatch.setattr(codecs_module, "_BY_ID", dict(codecs_module._BY_ID))


def test_register_codec_makes_a_name_usable_and_refuses_clashes(registry, tmp_path):
    assert "test-copy" not in medmask.available_codecs()
    medmask.register_codec(_Copy())
    assert "test-copy" in medmask.available_codecs()
    assert isinstance(medmask.get_codec("test-copy"), _Copy)
    a = np.zeros((4, 5, 6), bool)
    a[1:3, 2:4, 3:5] = True
    space = Space(shape=(4, 5, 6))
    with MaskArchive(tmp_path / "c.mska", "w", codec="test-copy", space=space) as ar:
        ar.add("box", a)
    with MaskArchive(tmp_path / "c.mska") as ar:
        assert np.array_equal(ar.read_array("box"), a)

    class SameName(_Copy):
        codec_id = 201

    class SameId(_Copy):
        name = "test-other"

    class TooBig(_Copy):
        name, codec_id = "test-big", 256

    for bad in (SameName(), SameId(), TooBig()):
        with pytest.raises((MaskValidationError, ValueError)):
            medmask.register_codec(bad)
    assert "test-other" not in medmask.available_codecs()
    # the file names the new codec: without it, the archive cannot be read
    codecs_module._BY_NAME.pop("test-copy")
    codecs_module._BY_ID.pop(200)
    with (
        pytest.raises(UnsupportedFormatError, match="unknown codec id 200"),
        MaskArchive(tmp_path / "c.mska") as ar,
    ):
        ar.read_array("box")


# -- the release -------------------------------------------------------------------------------
def test_version_is_the_one_in_pyproject():
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    declared = re.search(r'^version\s*=\s*"([^"]+)"', text, flags=re.M).group(1)
    assert medmask.__version__ == declared
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)?", medmask.__version__)


# -- LabelMapping.max_label, SelectLabels.new_labels ------------------------------------------
def test_label_mapping_max_label():
    assert LabelMapping({}).max_label() == 0
    assert LabelMapping({"a": 1}).max_label() == 1
    assert LabelMapping({"b": 7, "a": 2, "c": 5}).max_label() == 7
    m = SegmentationMask(np.zeros((2, 2, 2), np.uint16), {"far": 300, "near": 1})
    assert m.mapping.max_label() == 300


def test_select_labels_new_labels():
    pytest.importorskip("torch")
    from medmask_monai import SelectLabels

    labels = {"liver": 1, "kidney_left": 2, "kidney_right": 3, "spleen": 4}
    assert SelectLabels([2, 4]).new_labels(labels) == {"kidney_left": 2, "spleen": 4}
    assert SelectLabels({2: 1, 3: 1}).new_labels(labels) == {"kidney_left": 1, "kidney_right": 1}
    assert SelectLabels([4, 1], binary=True).new_labels(labels) == {"liver": 1, "spleen": 1}
    # names keep the input's order, whatever the order asked
    assert list(SelectLabels({4: 9, 1: 8}).new_labels(labels)) == ["liver", "spleen"]
    assert SelectLabels(5).new_labels(labels) == {}


# -- medmask.inspect.space_fields --------------------------------------------------------------
def test_space_fields_in_both_conventions():
    affine = np.array(
        [[0.0, 0.0, -2.0, 10.0], [0.0, 1.5, 0.0, -20.0], [0.8, 0.0, 0.0, 30.0], [0, 0, 0, 1]]
    )
    space = affine_to_space(affine, (7, 8, 9))  # (x, y, z) shape, oblique-free but permuted
    f = space_fields(space)
    assert f["shape"] == [7, 8, 9] and f["shape_zyx"] == [9, 8, 7]
    assert np.allclose(f["spacing"], [0.8, 1.5, 2.0]) and np.allclose(
        f["spacing_zyx"], [2, 1.5, 0.8]
    )
    assert np.allclose(f["affine_ras"], space_to_affine(space))
    assert np.allclose(f["origin"], [10.0, -20.0, 30.0])
    assert np.allclose(f["origin_lps"], [-10.0, 20.0, 30.0])  # RAS -> LPS flips x and y
    assert np.allclose(np.array(f["direction"]) * f["spacing"], affine[:3, :3])
    # the LPS axis of voxel axis z is the RAS direction of voxel axis x... flipped in x, y
    assert np.allclose(f["axes_zyx_lps"][2], np.array(f["direction"])[:, 0] * [-1, -1, 1])
    import json

    assert json.loads(json.dumps(f)) == f  # JSON-ready as it is
    plain = space_fields(Space(shape=(3, 4, 5)))
    assert plain["shape_zyx"] == [3, 4, 5] and plain["spacing"] == [1.0, 1.0, 1.0]


# -- medmask.io ----------------------------------------------------------------------------------
def test_io_name_helpers_from_the_package():
    assert is_url("s3://bucket/a.mska") and not is_url("a.mska")
    assert split_suffix("s3://bucket/case.seg.nrrd") == ("case", ".seg.nrrd")
    assert format_from_name("x.nii.gz") == "nifti" and format_from_name("x.unknown") is None
    expect_name("x.mska", "mska")
    with pytest.raises(MaskValidationError, match="x.msk"):
        expect_name("x.msk", "mska")


def test_target_names_head_siblings_and_upload(tmp_path):
    (tmp_path / "case.mska").write_bytes(b"MSKA" + bytes(range(200)))
    t = Target.of(tmp_path / "case.mska")
    assert t.format_name == "mska" and Target.of(tmp_path / "l.nii.gz").format_name == "nifti"
    assert t.read_head(6) == b"MSKA\x00\x01" and len(t.read_head()) == 204
    sibling = t.with_name("other.msk")
    assert sibling.path == str(tmp_path / "other.msk") and sibling.format_name == "msk"
    with pytest.raises(FileNotFoundError):
        sibling.read_head()
    local = tmp_path / "finished.bin"
    local.write_bytes(b"whole")
    sibling.upload_from(local)
    assert (tmp_path / "other.msk").read_bytes() == b"whole"
    with pytest.raises(FileNotFoundError):
        sibling.upload_from(tmp_path / "gone.bin")
    assert (tmp_path / "other.msk").read_bytes() == b"whole"


def test_select_labels_backends_are_the_array_types_it_returns():
    torch = pytest.importorskip("torch")
    from monai.utils import TransformBackends

    from medmask_monai import SelectLabels, SelectLabelsd

    assert set(SelectLabels.backend) == {TransformBackends.TORCH, TransformBackends.NUMPY}
    assert SelectLabelsd.backend == SelectLabels.backend
    a = np.array([[0, 1, 2, 3]], np.uint8)
    got = SelectLabels([2, 3])(a)  # numpy in, numpy out
    assert isinstance(got, np.ndarray) and got.tolist() == [[0, 0, 2, 3]]
    got = SelectLabels([2, 3])(torch.as_tensor(a))  # torch in, torch out
    assert isinstance(got, torch.Tensor) and got.tolist() == [[0, 0, 2, 3]]
    assert SelectLabelsd("l", [2])({"l": a})["l"].tolist() == [[0, 0, 2, 0]]


def test_target_is_url_and_scheme():
    t = Target("S3://bucket/case.mska", {"anon": True})
    assert t.is_url and t.scheme == "s3" and t.storage_options == {"anon": True}
    local = Target("/data/case.mska", {"anon": True})
    assert not local.is_url and local.scheme == "" and local.storage_options == {}
