"""Benchmark tables as pictures: one PNG of bar charts beside each Markdown table.

Shared by the benchmark scripts; needs matplotlib (the ``stats`` extra) and quietly does
nothing without it (the Markdown is the record; the pictures are for the README).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: One colour per column across all charts of a picture (Okabe-Ito, colour-blind safe).
COLORS = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#999999")


@dataclass
class Panel:
    """One bar chart: ``values[i]`` for ``labels[i]`` (``None``: not measured, left out)."""

    title: str
    labels: Sequence[str]
    values: Sequence[float | None]
    unit: str = ""
    log: bool = False
    highlight: str | None = None  # label whose bar is drawn darker
    notes: dict[str, str] = field(default_factory=dict)
    ref: float | None = None  # a dashed vertical line (e.g. 1 for speed-ups)


def _fmt(v: float, unit: str) -> str:
    if unit == "s":
        return f"{v * 1e3:.3g} ms" if v < 1 else f"{v:.3g} s"
    if unit == "B":
        return (
            f"{v / 1e6:.3g} MB" if v >= 1e6 else (f"{v / 1e3:.3g} kB" if v >= 1e3 else f"{v:.0f} B")
        )
    return f"{v:,.3g}{(' ' + unit) if unit else ''}"


def save_panels(
    title: str, panels: Sequence[Panel], out: Path, *, cols: int | None = None
) -> Path | None:
    """Draw ``panels`` side by side (horizontal bars, value written at each bar) into ``out``.

    Args:
        title: The picture's title.
        panels: The charts.
        out: The ``.png`` to write (its folder is created).
        cols: Charts per row (default: all in one row up to 3).

    Returns:
        ``out``, or ``None`` when matplotlib is not installed.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - depends on the environment
        return None
    panels = [p for p in panels if any(v is not None for v in p.values)]
    if not panels:
        return None
    cols = cols or min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    n_bars = max(len(p.labels) for p in panels)
    fig = Figure(figsize=(max(4.6 * cols, 7.5), (0.45 * n_bars + 1.2) * rows + 0.5), dpi=110)
    FigureCanvasAgg(fig)
    all_labels = list(dict.fromkeys(lab for p in panels for lab in p.labels))
    color = {lab: COLORS[i % len(COLORS)] for i, lab in enumerate(all_labels)}
    for k, p in enumerate(panels):
        ax = fig.add_subplot(rows, cols, k + 1)
        items = [(lab, v) for lab, v in zip(p.labels, p.values, strict=True) if v is not None]
        labs = [lab for lab, _ in items][::-1]
        vals = [float(v) for _, v in items][::-1]
        bars = ax.barh(
            range(len(vals)),
            vals,
            color=[color[lab] for lab in labs],
            edgecolor=["black" if lab == p.highlight else "none" for lab in labs],
        )
        ax.set_yticks(range(len(vals)), labs, fontsize=8)
        if p.log:
            ax.set_xscale("log")
        ax.set_title(p.title, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        top = max(vals) if vals else 1
        for b, v, lab in zip(bars, vals, labs, strict=True):
            text = _fmt(v, p.unit) + (f" ({p.notes[lab]})" if lab in p.notes else "")
            ax.text(
                b.get_width() * (1.05 if p.log else 1) + (0 if p.log else top * 0.01),
                b.get_y() + b.get_height() / 2,
                text,
                va="center",
                fontsize=7,
            )
        if p.log:
            lo = min(v for v in vals if v > 0)
            ax.set_xlim(lo / 2, top * 20)
        else:
            ax.set_xlim(0, top * 1.45)
        if p.ref is not None:
            ax.axvline(p.ref, color="0.3", linestyle="--", linewidth=0.8)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out
