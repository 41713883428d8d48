"""``medmask show``: three orthogonal views of an archive's masks (a window or a PNG)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import MaskValidationError
from ..io.names import expect_name, split_suffix
from ._common import EXIT_OK, AddCommand, UsageError, require_file, say

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


def _window(args: argparse.Namespace, kwargs: dict) -> bool:
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

    render(args.archive, args.names, pyplot=True, **kwargs)
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


def cmd_show(args: argparse.Namespace) -> int:
    path = Path(args.archive)
    require_file(path)
    args.names = _names(args.names)
    kwargs = {"mip": args.mip, "image": args.image, "window": _window_arg(args.window)}
    if args.image is not None:
        require_file(Path(args.image))
    if args.output is None and display_available() and _window(args, kwargs):
        return EXIT_OK
    from ..viz import save_png

    if args.output is not None:
        out = Path(args.output)
        try:
            expect_name(out, "png", what="picture (-o)")
        except MaskValidationError as exc:
            raise UsageError(str(exc)) from None
    else:
        out = _free_name(split_suffix(path)[0])
    save_png(path, out, args.names, **kwargs)
    if args.output is None:
        print(f"no display here: wrote {out}")
    else:
        say(args, f"wrote {out}")
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
    s.add_argument("archive", metavar="ARCHIVE", help="the .mska (or .msk)")
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
