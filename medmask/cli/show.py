"""``medmask show``: three orthogonal views of an archive's masks (a window or a PNG)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import MaskValidationError
from ..io.names import expect_name, is_url, split_suffix
from ._common import EXIT_OK, AddCommand, UsageError, require_file, say, storage_options

#: matplotlib backends that draw no window.
_NON_INTERACTIVE = {"agg", "pdf", "pgf", "ps", "svg", "cairo", "template"}


def display_available() -> bool:
    """Whether a window can be opened here (macOS and Windows: yes; elsewhere a display)."""
    if os.name == "nt" or sys.platform == "darwin":
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _free_name(stem: str) -> Path:
    """``<stem>_show.png`` in the current folder, numbered so that no file is replaced."""
    path = Path(f"{stem}_show.png")
    k = 1
    while path.exists():
        path = Path(f"{stem}_show-{k}.png")
        k += 1
    return path


def _window(source: object, names: list[str] | None, kwargs: dict) -> bool:
    """Show the picture in a window; False when no interactive backend can be used."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    try:
        backend = str(plt.get_backend()).lower()
    except Exception:  # noqa: BLE001 - a backend that cannot start: write a file instead
        return False
    if backend in _NON_INTERACTIVE or backend.startswith("module://matplotlib_inline"):
        return False
    from ..viz import render

    render(source, names, pyplot=True, **kwargs)
    plt.show()
    return True


def _names(raw: list[str] | None) -> list[str] | None:
    if not raw:
        return None
    out = [n.strip() for part in raw for n in part.split(",") if n.strip()]
    return out or None


def _window_arg(raw: str | None) -> tuple[float, float] | None:
    if raw is None:
        return None
    try:
        lo, hi = (float(v) for v in raw.split(","))
    except ValueError:
        raise UsageError(f"--window takes LOW,HIGH (two numbers), got {raw!r}") from None
    if not hi > lo:
        raise UsageError(f"--window {raw}: HIGH must be above LOW")
    return lo, hi


def _require(path: Path) -> None:
    """A missing or folder input is bad usage (exit status 2)."""
    try:
        require_file(path)
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise UsageError(str(exc)) from None


def _open_source(args: argparse.Namespace):
    """What to draw: a local path, or for a URL an open archive / a loaded mask."""
    if not is_url(args.archive):
        path = Path(args.archive)
        _require(path)
        return path
    so = storage_options(args)
    if split_suffix(args.archive)[1].lower() == ".msk":
        from ..storage import load_mask

        return load_mask(args.archive, storage_options=so)
    from ..storage import MaskArchive

    return MaskArchive(args.archive, storage_options=so)


def cmd_show(args: argparse.Namespace) -> int:
    if not is_url(args.archive):
        _require(Path(args.archive))
    args.names = _names(args.names)
    kwargs = {"mip": args.mip, "image": args.image, "window": _window_arg(args.window)}
    if args.image is not None:
        _require(Path(args.image))
    out = None
    if args.output is not None:
        out = Path(args.output)
        try:
            expect_name(out, "png", what="picture (-o)")
        except MaskValidationError as exc:
            raise UsageError(str(exc)) from None
    source = _open_source(args)
    try:
        if out is None and display_available() and _window(source, args.names, kwargs):
            return EXIT_OK
        from ..viz import save_png

        if out is None:
            out = _free_name(split_suffix(args.archive)[0])
            save_png(source, out, args.names, **kwargs)
            print(f"no display here: wrote {out}")
        else:
            save_png(source, out, args.names, **kwargs)
            say(args, f"wrote {out}")
    finally:
        close = getattr(source, "close", None)
        if callable(close) and not isinstance(source, Path):
            close()
    return EXIT_OK


def register(add: AddCommand) -> None:
    """Add ``show`` to the parser (``add`` makes one subparser)."""
    s = add(
        "show",
        "draw masks in three orthogonal views (window or PNG)",
        "Draw the masks of an archive (or .msk) in three orthogonal panels: slices through the\n"
        "planes with most mask voxels, or maximum intensity projections (--mip). Each mask has\n"
        "its own colour (stored colours first, a fixed palette otherwise); the legend gives\n"
        "names and volumes; panel sides are labelled with patient directions (R/L, A/P, S/I).\n"
        "Without -o the picture opens in a window where there is a display, else it is written\n"
        "to ./<case>_show.png (never replacing a file) and the path is printed.\n\n"
        "examples:\n"
        "  medmask show s0000.mska -o s0000.png\n"
        "  medmask show s0000.mska --names femur_left,femur_right --mip -o femurs.png\n"
        "  medmask show s0000.mska --image s0000/ct.nii.gz -o overlay.png",
    )
    s.add_argument("archive", metavar="ARCHIVE", help="the .mska (or .msk): a path or a URL")
    s.add_argument(
        "--names",
        nargs="+",
        metavar="NAME",
        help="masks to draw (default: all; space- or comma-separated)",
    )
    s.add_argument("-o", "--output", metavar="PNG", help="write the picture to this .png")
    s.add_argument("--mip", action="store_true", help="maximum intensity projections")
    s.add_argument("--image", metavar="NIFTI", help="draw the masks over this image (same grid)")
    s.add_argument(
        "--window",
        metavar="LOW,HIGH",
        help="grey window of --image (default: soft tissue for CT, else 1st-99th percentile)",
    )
    s.set_defaults(func=cmd_show)
