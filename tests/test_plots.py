"""The save helper: PNG, PDF and JSON written together, and byte-identical across runs (no dates in the files)."""
import json

import matplotlib.pyplot as plt
import pandas as pd

from ttc_utils.plots import savefig, set_style


def draw():
    fig, ax = plt.subplots()
    ax.plot([1, 2, 4], [0.2, 0.5, 0.7], marker="o", label="x")
    ax.set(xscale="log", title="a curve")
    ax.legend()
    return fig


def test_figures_are_byte_identical_across_runs_and_carry_their_numbers(tmp_path):
    set_style()
    data = pd.DataFrame({"budget": [1, 2, 4], "accuracy": [0.2, 0.5, 0.7]})
    for run in ("a", "b"):
        savefig(draw(), "curve", data, tmp_path / run)
        plt.close("all")
    for ext in ("png", "pdf", "json"):
        assert (tmp_path / "a" / f"curve.{ext}").read_bytes() == (tmp_path / "b" / f"curve.{ext}").read_bytes()
    assert b"CreationDate" not in (tmp_path / "a" / "curve.pdf").read_bytes()
    assert json.loads((tmp_path / "a" / "curve.json").read_text())[2] == {"budget": 4, "accuracy": 0.7}
