"""One figure style for the suite and one save helper that writes PNG, PDF and the JSON of plotted numbers.

    set_style()
    fig, ax = plt.subplots()
    ...
    savefig(fig, "nb00_training_loss", data=curves, figures_dir="figures")
"""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

# One fixed colour and marker per method, shared by every figure of the suite.
PALETTE = sns.color_palette("colorblind", 10)
METHOD_STYLE = {
    "majority": (PALETTE[0], "o"),
    "best_of_n": (PALETTE[1], "s"),
    "best_of_n_weighted": (PALETTE[2], "^"),
    "beam": (PALETTE[3], "D"),
    "lookahead": (PALETTE[4], "v"),
    "revisions": (PALETTE[5], "P"),
    "compute_optimal": (PALETTE[6], "*"),
    "pass_at_n": (PALETTE[7], "x"),
}

METHOD_LABEL = {
    "majority": "majority@N", "best_of_n": "best-of-N", "best_of_n_weighted": "best-of-N weighted",
    "beam": "beam search", "lookahead": "lookahead search", "revisions": "revisions",
    "compute_optimal": "compute-optimal", "pass_at_n": "pass@N (coverage)",
}


def set_style() -> None:
    """Seaborn paper context, colour-blind palette, editable (Type 42) fonts in PDFs."""
    sns.set_theme(context="paper", style="whitegrid", palette="colorblind", font_scale=1.2)
    matplotlib.rcParams.update({"pdf.fonttype": 42, "ps.fonttype": 42, "figure.dpi": 110,
                                "savefig.dpi": 150, "savefig.bbox": "tight"})


def size_palette(names: list[str]) -> dict:
    """Colours for model sizes, light (small) to dark (large)."""
    return dict(zip(names, sns.color_palette("flare", len(names))))


def _jsonable(data):
    if isinstance(data, pd.DataFrame):
        return data.replace({np.nan: None}).to_dict(orient="records")
    if isinstance(data, pd.Series):
        return _jsonable(data.to_frame())
    if isinstance(data, dict):
        return {str(k): _jsonable(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_jsonable(v) for v in data]
    if isinstance(data, np.generic):
        return data.item()
    return data


def savefig(fig, name: str, data, figures_dir: str | Path = "figures") -> Path:
    """Write `<figures_dir>/<name>.png`, `.pdf` and `.json` (the numbers the figure plots), then show the PNG just
    written (under IPython) and close the figure: what a notebook shows is the file, and the inline backend does not
    draw the figure a third time at the end of the cell (a quarter of a warm rerun's drawing time)."""
    out = Path(figures_dir)
    out.mkdir(parents=True, exist_ok=True)
    # no creation date or software version in the files: the same numbers give byte-identical figures
    fig.savefig(out / f"{name}.png", metadata={"Software": None})
    fig.savefig(out / f"{name}.pdf", metadata={"CreationDate": None, "Producer": None, "Creator": None})
    (out / f"{name}.json").write_text(json.dumps(_jsonable(data), indent=1, default=str))
    _show(out / f"{name}.png")
    plt.close(fig)
    return out / f"{name}.png"


def _show(png: Path) -> None:
    """Display a written PNG under IPython at the on-screen size the inline backend gives a figure: its pixels are at
    `savefig.dpi`, the inline backend's at `figure.dpi`. Outside IPython, nothing."""
    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:  # saving needs no IPython
        return
    if get_ipython() is None:
        return
    data = png.read_bytes()
    width = int.from_bytes(data[16:20], "big")  # the IHDR chunk's width, right after the PNG signature
    saved, shown = matplotlib.rcParams["savefig.dpi"], matplotlib.rcParams["figure.dpi"]
    scale = shown / saved if isinstance(saved, (int, float)) else 1.0  # savefig.dpi may be "figure"
    display(Image(data, width=round(width * scale)))


def save_numbers(name: str, data, figures_dir: str | Path = "figures") -> Path:
    """Write `<figures_dir>/<name>.json`: a table of results that has no figure (e.g. a findings table)."""
    out = Path(figures_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(_jsonable(data), indent=1, default=str))
    return out / f"{name}.json"


def curve_panel(ax, summary: pd.DataFrame, key: str, names: list[str], colors: dict, dashed=(), x: str = "budget"
                ) -> None:
    """One accuracy-vs-`x` line with its band per name (rows of `summary` whose `key` column is that name); `x` is
    the budget or a measured `cost` column (`results.accounted`)."""
    for name in names:
        g = summary[summary[key] == name].sort_values(x)
        if g.empty:  # a curve this run has not (an open PRM comes without an ORM)
            continue
        ax.plot(g[x], g.accuracy, marker="o", ms=3, color=colors[name], label=name,
                ls="--" if name in dashed else "-")
        ax.fill_between(g[x], g.low, g.high, color=colors[name], alpha=0.15)
    # generations (and generations + calls) read best in doublings; FLOPs span decades
    ax.set_xscale("log", base=2 if summary[x].max() < 1e5 else 10)
    ax.set(xlabel="generation budget N" if x == "budget" else x, ylabel="accuracy")
    ax.legend(fontsize=8)


def bars_per_bin(ax, summary: pd.DataFrame, budget: int, labels: list[str], colors: dict) -> None:
    """Accuracy per difficulty bin at one budget, a bar per label with its bootstrap band as an error bar."""
    d = summary[summary.budget == budget]
    sns.barplot(d, x="bin", y="accuracy", hue="label", palette=colors, hue_order=labels, ax=ax)
    rows = d.set_index(["label", "bin"]).loc[[(label, b) for label in labels for b in sorted(d.bin.unique())]]
    for patch, (_, row) in zip(ax.patches, rows.reset_index().iterrows()):
        ax.errorbar(patch.get_x() + patch.get_width() / 2, row.accuracy,
                    yerr=[[row.accuracy - row.low], [row.high - row.accuracy]], color="0.2", lw=0.8)
    ax.set(title=f"budget {budget}", xlabel="oracle bin (1 = easiest)")
