"""Rendering evaluation results: aligned text tables, JSON files, accuracy-against-k plots (PNG)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def percent(x: float) -> str:
    return f"{100 * x:.1f}"


def write_json(path: str | Path, data: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False))
    return path


def plot_accuracy(curves: dict[str, dict[int, float]], path: str | Path, title: str, levels: dict[str, float] | None = None) -> Path:
    """Top-k accuracy (%) against k on a log axis, one line per retriever; `levels` as dashed lines (EM, ceiling)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, accuracy in curves.items():
        ks = sorted(accuracy)
        ax.plot(ks, [100 * accuracy[k] for k in ks], marker="o", label=name)
    ax.set_xscale("log")
    all_ks = sorted({k for accuracy in curves.values() for k in accuracy})
    ax.set_xticks(all_ks, [str(k) for k in all_ks])
    merged: dict[float, list[str]] = {}  # levels at the same height share one line and one label
    for name, value in (levels or {}).items():
        merged.setdefault(round(100 * value, 1), []).append(name)
    for value, names in merged.items():
        name, value = " · ".join(names), value / 100
        ax.axhline(100 * value, linestyle="--", linewidth=1.2, color="dimgrey")
        # x in axes fractions, y in data: the label sits at the left end of its line whatever the scale
        ax.text(0.01, 100 * value, name, transform=ax.get_yaxis_transform(), fontsize=8, color="black", va="bottom")
    ax.set_xlabel("k (passages retrieved)")
    ax.set_ylabel("top-k accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fit_title(fig, ax, title)
    fig.savefig(path, dpi=120)
    fig.savefig(path.with_suffix(".svg"))  # the same figure as a vector file, for papers and pages
    plt.close(fig)
    return path


def fit_title(fig, ax, title: str, fontsize: float = 10, smallest: float = 6) -> None:
    """`title` on `ax`, wrapped at spaces to the figure's width and shrunk (down to `smallest` points) until it lies
    inside the figure: a title of six configurations ran off both sides of the 6-inch plot."""
    import textwrap

    chars = max(20, int(fig.get_figwidth() * 72 / (0.6 * fontsize)))  # ~0.6 em per character of DejaVu Sans
    ax.set_title("\n".join(textwrap.fill(line, chars) for line in title.splitlines()), fontsize=fontsize)
    while True:
        fig.tight_layout()  # makes room above the axes for the title's lines
        box = ax.title.get_window_extent(fig.canvas.get_renderer())
        if (box.x0 >= 0 and box.y0 >= 0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height) or fontsize <= smallest:
            return
        fontsize -= 1
        ax.title.set_fontsize(fontsize)
