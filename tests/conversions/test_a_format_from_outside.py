"""A foreign format added from outside the package, without editing any medmask file: a
toy ``.npz`` of masks, declared and registered here. Content recognition, the output-name
rules, ``medmask pack``, ``medmask unpack -o x.npz``, ``medmask convert`` and the command
line's help all work through it, because they all read the format table."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

import medmask.conversions  # noqa: F401 - the built-in implementations, registered first
from medmask import MaskArchive
from medmask.cli import main
from medmask.conversions import (
    ConversionReport,
    MaskRecord,
    iter_archive_records,
    local_copy,
    records_to_archive,
)
from medmask.conversions.detect import detect
from medmask.io.formats import (
    Capabilities,
    FileFormat,
    identify,
    register_format,
    unregister_format,
)
from medmask.io.names import expect_name, format_from_name, split_suffix
from medmask.spaces import Space


class NpzMasks(FileFormat):
    """A NumPy ``.npz`` holding one bool ``(z, y, x)`` array per mask, and ``__spacing__``."""

    kind = "npz-masks"
    title = "NumPy archive of masks"
    suffixes = (".npz",)
    capabilities = Capabilities(pack=True, unpack=True, overlaps=True)
    unpack_options = frozenset({"names"})
    output_name = "X.npz"
    pack_help = "a NumPy .npz of bool masks (one array per mask; __spacing__ in mm)"
    unpack_help = "a NumPy .npz, one bool array per mask"

    def sniff(self, head: bytes) -> bool:
        """A zip whose first member is a ``.npy`` array."""
        if head[:4] != b"PK\x03\x04" or len(head) < 30:
            return False
        n = int.from_bytes(head[26:28], "little")
        return head[30 : 30 + n].endswith(b".npy")

    def read(self, src, out, *, codec=None, progress=None) -> ConversionReport:
        with local_copy(src) as path, np.load(path) as z:
            names = [n for n in z.files if not n.startswith("__")]
            spacing = tuple(float(v) for v in z["__spacing__"])
            records = [MaskRecord(n, z[n].astype(bool)) for n in names]
        space = Space(shape=records[0].array.shape, spacing=spacing)
        with out.writing() as dest:
            masks = records_to_archive(records, space, dest, codec=codec, progress=progress)
        return ConversionReport(str(src), str(out), self.kind, masks=masks)

    def write(self, archive, out, *, progress=None, names=None) -> ConversionReport:
        with local_copy(archive) as path:
            space, _count, records = iter_archive_records(path, names)
            arrays = {r.name: r.array for r in records}
        with out.writing() as dest, open(dest, "wb") as fh:
            np.savez(fh, **arrays, __spacing__=np.asarray(space.spacing))
        return ConversionReport(str(archive), str(out), self.kind, masks=list(arrays))


@pytest.fixture(autouse=True)
def npz_format():
    fmt = register_format(NpzMasks())
    yield fmt
    unregister_format(fmt.kind)


@pytest.fixture
def masks(tmp_path):
    rng = np.random.default_rng(3)
    arrays = {"liver": rng.random((4, 5, 6)) > 0.5, "spleen": rng.random((4, 5, 6)) > 0.7}
    path = tmp_path / "case.npz"
    np.savez(path, **arrays, __spacing__=np.array([2.0, 1.0, 0.5]))
    return path, arrays


def cli(*argv) -> int:
    return main([str(a) for a in argv])


def test_recognised_by_content_before_the_generic_zip(masks, tmp_path):
    path, _ = masks
    assert identify(path.read_bytes()).kind == "npz-masks"
    renamed = tmp_path / "renamed.bin"
    renamed.write_bytes(path.read_bytes())
    assert detect(renamed) == "npz-masks"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("readme.txt", "not masks")
    assert identify(buf.getvalue()).kind == "zip"


def test_name_rules(tmp_path):
    assert format_from_name("out.npz") == "npz-masks"
    assert split_suffix("s3://b/case.npz") == ("case", ".npz")
    expect_name("out.npz", "npz-masks")
    with pytest.raises(ValueError, match=r"'out\.npz'"):
        expect_name("out.nii.gz", "npz-masks")


def test_pack_unpack_and_convert_through_the_command_line(masks, tmp_path, capsys):
    path, arrays = masks
    assert cli("pack", path, "-o", tmp_path / "a.mska", "-q") == 0
    with MaskArchive(tmp_path / "a.mska") as ar:
        assert ar.all_names() == ["liver", "spleen"]
        assert tuple(ar.space.spacing) == (2.0, 1.0, 0.5)
        for name, want in arrays.items():
            np.testing.assert_array_equal(ar.read_array(name), want)
    assert cli("unpack", tmp_path / "a.mska", "-o", tmp_path / "back.npz", "-q") == 0
    with np.load(tmp_path / "back.npz") as z:
        for name, want in arrays.items():
            np.testing.assert_array_equal(z[name], want)
    assert cli("convert", tmp_path / "a.mska", "-o", tmp_path / "c.npz", "-q") == 0
    assert identify((tmp_path / "c.npz").read_bytes()).kind == "npz-masks"


def test_refusals_come_from_the_declaration(masks, tmp_path, capsys):
    path, _ = masks
    assert cli("pack", path, "--binarize", "-o", tmp_path / "b.mska") == 2
    assert "not applicable to a NumPy archive of masks source" in capsys.readouterr().err
    assert cli("pack", path, "-o", tmp_path / "one.msk") == 2  # no label map: .mska only
    assert "one.mska" in capsys.readouterr().err
    assert cli("pack", path, "-o", tmp_path / "a.mska", "-q") == 0
    assert cli("unpack", tmp_path / "a.mska", "-o", tmp_path / "x.zip") == 2
    err = capsys.readouterr().err
    assert "X.npz (NumPy archive of masks)" in err and "the name" in err
    assert cli("unpack", tmp_path / "a.mska", "-o", tmp_path / "x.npz", "--overlap", "first") == 2
    assert "not applicable to a NumPy archive of masks output (X.npz)" in capsys.readouterr().err
    assert not (tmp_path / "b.mska").exists() and not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize(
    ("command", "line"),
    [
        ("pack", "a NumPy .npz of bool masks (one array per mask"),
        ("unpack", "X.npz           a NumPy .npz, one bool array per mask"),
        ("convert", "OUT.npz    a NumPy .npz, one bool array per mask"),
    ],
)
def test_help_lists_it(capsys, command, line):
    with pytest.raises(SystemExit):
        cli(command, "--help")
    assert line in capsys.readouterr().out


def test_gone_when_unregistered(npz_format, masks, tmp_path):
    path, _ = masks
    unregister_format(npz_format.kind)
    try:
        assert detect(path) == "zip" and format_from_name("x.npz") is None
        assert cli("pack", path, "-o", tmp_path / "a.mska") == 1
    finally:
        register_format(npz_format)
