"""medmask.viz and ``medmask show``: pictures checked by their pixels (size, colours, not
blank, orientation), notebook views, the command's window/file behaviour."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from medmask import MaskArchive, SegmentationMask
from medmask.cli import main
from medmask.errors import MaskNotFoundError, MaskValidationError, SpaceMismatchError
from medmask.spaces import Space
from medmask.viz import (
    BACKGROUND,
    PALETTE,
    archive_html,
    patient_axes,
    png_bytes,
    render,
    save_png,
    segmask_png,
)

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")

SHAPE = (30, 40, 50)  # (z, y, x)


def identity_space(flip_x: bool = False) -> Space:
    xyz = Space(
        shape=SHAPE[::-1],
        spacing=(1.0, 1.0, 2.0),
        x_orientation=(-1.0, 0.0, 0.0) if flip_x else (1.0, 0.0, 0.0),
    )
    return xyz.reverse_axis_order()


def box(z, y, x) -> np.ndarray:
    m = np.zeros(SHAPE, bool)
    m[z[0] : z[1], y[0] : y[1], x[0] : x[1]] = True
    return m


def pixels(png: bytes | Path) -> np.ndarray:
    data = png if isinstance(png, bytes) else Path(png).read_bytes()
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def has_color(rgb: np.ndarray, color, tol: int = 2, at_least: int = 20) -> bool:
    d = np.abs(rgb.astype(int) - np.asarray(color)).max(axis=2)
    return int((d <= tol).sum()) >= at_least


@pytest.fixture
def archive(tmp_path) -> Path:
    space = identity_space()
    path = tmp_path / "case.mska"
    with MaskArchive(path, "w", space=space) as ar:
        ar.add("body", SegmentationMask(box((5, 25), (5, 35), (5, 45)), {"body": 1}, space))
        ar.add(
            "kidney",
            SegmentationMask(box((10, 20), (10, 20), (30, 40)), {"kidney": 1}, space),
            attrs={"color": [10, 200, 30]},
        )
        ar.add("absent", SegmentationMask(np.zeros(SHAPE, bool), {"absent": 1}, space))
    return path


# -- orientation ------------------------------------------------------------------------------
def test_patient_axes():
    assert patient_axes(identity_space()) == [("I", "S"), ("A", "P"), ("R", "L")]
    assert patient_axes(identity_space(flip_x=True))[2] == ("L", "R")


@pytest.mark.parametrize("flip_x", [False, True])
def test_left_is_drawn_on_the_right(flip_x):
    """Radiological convention: a mask on the patient's left, anterior, superior shows at the
    picture's right (axial, coronal), top (coronal: superior), top (axial: anterior)."""
    space = identity_space(flip_x)
    x = (40, 50) if not flip_x else (0, 10)  # patient left in both grids
    seg = SegmentationMask(box((25, 30), (0, 8), x), {"m": 1}, space)
    rgb = pixels(segmask_png(seg, size=400))
    color = PALETTE[0]
    hit = np.abs(rgb.astype(int) - color).max(axis=2) <= 2
    cols = np.flatnonzero(hit.any(axis=0))
    panel_edges = np.flatnonzero((rgb == 255).all(axis=(0, 2)))  # white gaps between panels
    axial_end = panel_edges[0]
    axial = hit[:, :axial_end]
    ys, xs = np.nonzero(axial)
    assert xs.min() > axial_end / 2  # patient left: right half of the axial panel
    assert ys.max() < axial.shape[0] / 2  # anterior: top half
    assert cols.size


# -- render ---------------------------------------------------------------------------------------
def test_render_slices_colours_legend(archive, tmp_path):
    out = save_png(archive, tmp_path / "x.png", width=10, dpi=80)
    rgb = pixels(out)
    assert rgb.shape[1] == 800 and 160 <= rgb.shape[0] <= 400
    assert has_color(rgb, (10, 200, 30), at_least=200)  # stored colour
    assert has_color(rgb, PALETTE[0], at_least=500)  # first palette colour for 'body'
    assert has_color(rgb, BACKGROUND, at_least=100)
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 20  # text, legend: not blank
    fig = render(archive)
    labels = [t.get_text() for t in fig.axes[3].get_legend().get_texts()]
    assert labels[0].startswith("body (") and "mL" in labels[0]
    assert any(t == "absent (empty)" for t in labels)
    titles = [ax.get_title() for ax in fig.axes[:3]]
    assert [t.split()[0] for t in titles] == ["axial", "coronal", "sagittal"]
    letters = {t.get_text() for ax in fig.axes[:3] for t in ax.texts}
    assert letters == set("RLAPSI")


def test_render_names_and_mip(archive, tmp_path):
    out = save_png(archive, tmp_path / "k.png", names=["kidney"], mip=True, width=8, dpi=60)
    rgb = pixels(out)
    assert has_color(rgb, (10, 200, 30), at_least=100)
    assert not has_color(rgb, PALETTE[0], at_least=1)
    body = pixels(save_png(archive, tmp_path / "b.png", names=["body"], width=8, dpi=60))
    assert has_color(body, PALETTE[0], at_least=100)  # the colour it has in the full picture
    with pytest.raises(MaskNotFoundError, match="kidny"):
        render(archive, ["kidny"])
    with pytest.raises(MaskValidationError, match="k.png"):
        save_png(archive, tmp_path / "k.jpg")


def test_render_over_an_image(archive, tmp_path):
    nib = pytest.importorskip("nibabel")
    from medmask.geometry import space_to_affine

    space = identity_space()
    ramp = np.broadcast_to(np.linspace(-1000, 1000, SHAPE[2], dtype=np.float32), SHAPE)
    img = tmp_path / "ct.nii.gz"
    nib.save(
        nib.Nifti1Image(np.ascontiguousarray(ramp.transpose(2, 1, 0)), space_to_affine(space)), img
    )
    rgb = pixels(save_png(archive, tmp_path / "o.png", image=img, width=8, dpi=60))
    grey = (rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])
    levels = np.unique(rgb[grey][:, 0])
    assert len(levels) > 30  # the image's grey ramp is drawn
    half = np.round(0.5 * np.asarray((10, 200, 30)))  # half transparent over the image
    assert has_color(rgb, half + 0, tol=130, at_least=50)
    other = Space(shape=(10, 10, 10)).reverse_axis_order()
    nib.save(
        nib.Nifti1Image(np.zeros((10, 10, 10), np.float32), space_to_affine(other)),
        tmp_path / "other.nii.gz",
    )
    with pytest.raises(SpaceMismatchError, match="other.nii.gz"):
        render(archive, image=tmp_path / "other.nii.gz")


# -- notebook views ---------------------------------------------------------------------------
def test_png_bytes_roundtrip():
    a = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    assert np.array_equal(pixels(png_bytes(a)), a)
    with pytest.raises(MaskValidationError):
        png_bytes(np.zeros((4, 4)))


def test_segmask_png(archive):
    with MaskArchive(archive) as ar:
        seg = ar["kidney"]
    png = segmask_png(seg, size=128)
    assert png.startswith(b"\x89PNG")
    rgb = pixels(png)
    assert max(rgb.shape[:2]) == 128
    assert has_color(rgb, PALETTE[0], at_least=10)
    multi = SegmentationMask.lazy_init(8, space=identity_space())
    multi.add_label(box((1, 5), (1, 5), (1, 5)), 1, "a")
    multi.add_label(box((20, 29), (20, 39), (20, 49)), 2, "b")
    rgb = pixels(segmask_png(multi))
    assert has_color(rgb, PALETTE[0], at_least=4) and has_color(rgb, PALETTE[1], at_least=50)
    with pytest.raises(MaskValidationError, match="size"):
        segmask_png(seg, size=3)
    assert seg._repr_png_() == segmask_png(seg)


def test_archive_html(tmp_path, archive, monkeypatch):
    space = identity_space()
    with MaskArchive(archive, "a") as ar:
        ar.add("<b>&x", SegmentationMask(box((0, 2), (0, 2), (0, 2)), {"x": 1}, space))
    with MaskArchive(archive) as ar:
        page = archive_html(ar)
        assert "&lt;b&gt;&amp;x" in page and "<b>&x" not in page
        assert "kidney" in page and "1,000" in page and "10:20, 10:20, 30:40" in page
        assert "data:image/png;base64," in page and "empty" in page
        assert "rgb(10,200,30)" in page
        short = archive_html(ar, max_rows=1)
        assert "3 more masks" in short and "kidney" not in short
        calls = []
        real = MaskArchive.read_cropped
        monkeypatch.setattr(MaskArchive, "read_cropped", lambda s, k: calls.append(k) or real(s, k))
        archive_html(ar, budget=0)  # boxes only: nothing decoded
        assert calls == []
        assert "shown as boxes" in archive_html(ar, budget=0)
        archive_html(ar, thumbnail=0)
        assert calls == []
        assert ar._repr_html_() == page  # the notebook view is archive_html


# -- the command ------------------------------------------------------------------------------
def test_cli_show_file_and_no_display(archive, tmp_path, monkeypatch, capsys):
    out = tmp_path / "pic.png"
    assert main(["show", str(archive), "-o", str(out), "--names", "kidney,body", "--mip"]) == 0
    assert has_color(pixels(out), (10, 200, 30))
    assert main(["show", str(archive), "-o", str(tmp_path / "pic.jpeg")]) == 2
    assert "pic.png" in capsys.readouterr().err
    assert main(["show", str(archive), "--names", "nope", "-o", str(out)]) == 1
    assert "nope" in capsys.readouterr().err
    assert main(["show", str(tmp_path / "gone.mska"), "-o", str(out)]) == 2
    assert main(["show", str(archive), "--image", str(tmp_path / "ct.nii.gz"), "-o", str(out)]) == 2
    assert "ct.nii.gz" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    assert main(["show", str(archive)]) == 0
    assert "wrote case_show.png" in capsys.readouterr().out
    assert main(["show", str(archive)]) == 0  # never replaces a file
    assert "wrote case_show-1.png" in capsys.readouterr().out
    assert (tmp_path / "case_show.png").is_file() and (tmp_path / "case_show-1.png").is_file()


@pytest.mark.realdata
def test_cli_show_real_case(real_case, tmp_path):
    from medmask.nifti import folder_to_archive

    ar = tmp_path / "s0000.mska"
    folder_to_archive(real_case, ar)
    out = tmp_path / "s.png"
    assert main(["show", str(ar), "-o", str(out)]) == 0
    rgb = pixels(out)
    drawn = [c for c in PALETTE if has_color(rgb, c, tol=1, at_least=30)]
    assert len(drawn) >= 10


def test_archive_html_of_a_url(archive, s3):
    url = s3.put("x/case.mska", archive.read_bytes())
    with MaskArchive(url, storage_options=s3.storage_options) as ar:
        page = archive_html(ar)
    assert "<b>case.mska</b>" in page and "kidney" in page and "data:image/png" in page


def test_msk_files_and_version1_archives(tmp_path, archive):
    from medmask import save_mask

    with MaskArchive(archive) as ar:
        kidney = ar["kidney"]
        space = ar.space
        names = ar.all_names()
        masks = {n: ar[n] for n in names}
    save_mask(kidney, tmp_path / "kidney.msk")
    rgb = pixels(save_png(tmp_path / "kidney.msk", tmp_path / "k.png", width=6, dpi=60))
    assert has_color(rgb, PALETTE[0], at_least=50)
    with MaskArchive(tmp_path / "v1.mska", "w", space=space, codec="zstd") as ar:
        for n, m in masks.items():
            ar.add(n, m)
    with MaskArchive(tmp_path / "v1.mska") as ar:
        page = archive_html(ar)
        assert "format 1: not stored" in page and "data:image/png" not in page
        fig = render(ar)
    labels = [t.get_text() for t in fig.axes[3].get_legend().get_texts()]
    assert labels[0].startswith("body (") and "absent (empty)" in labels


def test_benchmark_plots(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    try:
        from _plot import COLORS, Panel, save_panels
    finally:
        sys.path.pop(0)
    out = save_panels(
        "t",
        [
            Panel("size", ["a", "b", "c"], [1e3, 2e6, None], unit="B", log=True),
            Panel("time", ["a", "b", "c"], [0.002, 0.5, 3.0], unit="s"),
        ],
        tmp_path / "sub" / "p.png",
    )
    rgb = pixels(out)
    assert rgb.shape[1] > 500
    for hexcolor in COLORS[:3]:
        c = tuple(int(hexcolor[k : k + 2], 16) for k in (1, 3, 5))
        assert has_color(rgb, c, at_least=50), hexcolor
    assert save_panels("t", [Panel("x", ["a"], [None])], tmp_path / "q.png") is None


@pytest.mark.realdata
@pytest.mark.parametrize(
    "args",
    [
        ["--archives", "1", "--repeat", "1", "--no-old"],
        pytest.param(["--archives", "4", "--repeat", "1"], marks=pytest.mark.slow),
    ],
    ids=["one-archive", "four-archives"],
)
def test_bench_stats_runs(real_case, tmp_path, args):
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_stats.py"
    out = subprocess.run(
        [sys.executable, str(script), *args, "--real", str(real_case), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=True,
    ).stdout  # fmt: skip
    assert "faster than decoding" in out
    assert (tmp_path / "bench_stats.md").is_file() and (tmp_path / "bench_stats.png").is_file()
    # docs/stats.md quotes the region this benchmark writes (same columns)
    sys.path.insert(0, str(script.parent))
    try:
        from _regions import regions
    finally:
        sys.path.pop(0)
    written = regions((tmp_path / "bench_stats.md").read_text())["stats"]
    quoted = regions((script.parents[1] / "docs" / "stats.md").read_text())["stats"]
    header = [ln for ln in quoted.splitlines() if ln.startswith("| what")]
    assert header and [ln for ln in written.splitlines() if ln.startswith("| what")] == header


def test_cli_show_url(archive, tmp_path, s3, capsys):
    url = s3.put("p/case.mska", archive.read_bytes())
    opt = f"client_kwargs.endpoint_url={s3.server.endpoint}"
    out = tmp_path / "u.png"
    assert main(["show", url, "--storage-option", opt, "-o", str(out), "--mip"]) == 0
    assert has_color(pixels(out), (10, 200, 30), at_least=100)
    with MaskArchive(archive) as ar:
        from medmask import save_mask

        save_mask(ar["kidney"], tmp_path / "k.msk")
    url = s3.put("p/k.msk", (tmp_path / "k.msk").read_bytes())
    assert main(["show", url, "--storage-option", opt, "-o", str(out)]) == 0
    assert has_color(pixels(out), PALETTE[0], at_least=50)
