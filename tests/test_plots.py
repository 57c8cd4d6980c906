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


def test_savefig_shows_the_written_png_at_the_inline_size_and_closes_the_figure(tmp_path, monkeypatch):
    import IPython
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: object())  # as in a notebook's kernel
    monkeypatch.setattr(IPython.display, "display", shown.append)
    set_style()  # figure.dpi 110, savefig.dpi 150
    fig = draw()
    path = savefig(fig, "curve", pd.DataFrame({"x": [1]}), tmp_path)
    assert not plt.fignum_exists(fig.number)  # the inline backend has nothing left to draw again
    (image,) = shown
    assert image.data == path.read_bytes()
    width = int.from_bytes(path.read_bytes()[16:20], "big")
    assert image.width == round(width * 110 / 150)


def test_savefig_outside_ipython_shows_nothing(tmp_path, monkeypatch):
    import IPython
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: None)
    monkeypatch.setattr(IPython.display, "display", shown.append)
    fig = draw()
    savefig(fig, "curve", [], tmp_path)
    assert shown == [] and not plt.fignum_exists(fig.number)
