"""`fastinit simulate --quick` writes its table, JSON, CSV and plots; bad options fail cleanly; the figures
keep their texts inside and apart."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from _subproc import run_python
from fastinit._simulate_cli import add_simulate_parser, run_simulate


def _parse(argv):
    import argparse
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command", required=True)
    add_simulate_parser(sub)
    return p.parse_args(["simulate", *argv])


def test_quick_run_writes_files(tmp_path, capsys):
    out = tmp_path / "sim"
    rc = run_simulate(_parse(["--quick", "--schemes", "zeros,he,small", "--activations", "tanh",
                              "--networks", "2", "--output-dir", str(out), "--no-progress"]))
    assert rc == 0
    text = capsys.readouterr().out
    assert "== tanh: forward" in text and "== tanh: backward" in text   # one table per pass (with the band)
    assert "symmetric" in text and "vanishing" in text
    data = json.loads((out / "results.json").read_text())
    assert [(r["scheme"], r["activation"]) for r in data["runs"]] == [
        ("zeros", "tanh"), ("he", "tanh"), ("small", "tanh")]
    he = data["runs"][1]
    assert len(he["stats"]["preact_var"]) == data["sizes"]["depth"]
    assert len(he["theory"]["preact_var"]) == data["sizes"]["depth"]
    assert he["verdict"]["overall"] in {"stable", "vanishing", "exploding"}
    assert data["runs"][0]["verdict"]["overall"] == "symmetric"
    with open(out / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 * data["sizes"]["depth"]
    assert {"scheme", "activation", "layer", "preact_var", "preact_var_theory",
            "grad_preact_m2", "verdict_forward"} <= set(rows[0])
    for name in ("variance_tanh.png", "histograms_tanh.png"):
        png = (out / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


@pytest.mark.parametrize("argv, message", [
    (["--schemes", "nonsense"], "init"),
    (["--activations", "nope"], "activation"),
    (["--depth", "0"], "--depth"),
])
def test_bad_options_fail_without_running(tmp_path, capsys, argv, message):
    rc = run_simulate(_parse(["--quick", "--output-dir", str(tmp_path / "x"), "--no-progress", *argv]))
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("argv, message", [
    (["--seed", "-1"], "--seed"),
    (["--seed", str(1 << 64)], "--seed"),
    (["--bias", "nan"], "--bias"),
    (["--bias", "inf"], "--bias"),
    (["--schemes", ","], "--schemes"),
    (["--activations", ""], "--activations"),
    (["--report-layers", "0,-3,999"], "--report-layers"),
    (["--hist-layers", "7"], "--hist-layers"),     # --quick has depth 6
    (["--depth", "1000000", "--width", "100000", "--batch", "100000"], "GiB"),
])
def test_bad_values_are_usage_errors(tmp_path, capsys, argv, message):
    """One line on stderr and exit status 2, before any directory or file is made."""
    rc = run_simulate(_parse(["--quick", "--output-dir", str(tmp_path / "x"), "--no-progress", *argv]))
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_unwritable_paths_fail_before_the_simulation(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    rc = run_simulate(_parse(["--quick", "--output-dir", str(blocker / "sub"), "--no-progress"]))
    assert rc == 2 and "--output-dir" in capsys.readouterr().err
    for opt in ("--json", "--csv"):
        out = tmp_path / opt.strip("-")
        rc = run_simulate(_parse(["--quick", "--output-dir", str(out), "--no-progress",
                                  opt, str(blocker / "results")]))
        err = capsys.readouterr()
        assert rc == 2 and opt in err.err
        assert "simulating" not in err.out and "schemes x" not in err.out   # refused before working
        assert list(out.iterdir()) == []                                     # nothing written


def test_main_reports_usage_errors_with_status_2(capsys):
    from fastinit.cli import main

    assert main(["simulate", "--quick", "--seed", "-1", "--no-progress"]) == 2
    assert "--seed" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------
# The figures: a fixed layout (no tight_layout) must still keep every text inside the figure and apart.

@pytest.fixture(scope="module")
def deep_study():
    """The default study's depth at a tiny width: values from 1e-140 to 1e58 and long end labels, in seconds."""
    from fastinit import sim
    from fastinit._simulate_cli import STUDY_SCHEMES, scheme_spec

    schemes, acts, hist = list(STUDY_SCHEMES), ["tanh", "relu"], [1, 12, 25, 37, 50]
    sizes = dict(depth=50, width=32, batch=32)
    sw = sim.sweep(inits=[scheme_spec(s)[:2] for s in schemes], activations=acts, depths=[50], widths=[32],
                   seeds=[0], batch=32, dtype="float64", histograms=True, hist_layers=hist, hist_bins=60)
    by_grid = dict(zip([(s, a) for s in schemes for a in acts], sw.results.values(), strict=True))
    return {(s, a): by_grid[(s, a)] for a in acts for s in schemes}, schemes, acts, hist, sizes


@pytest.fixture
def drawn_texts(monkeypatch):
    """(text, window extent) of every non-empty Text as it is drawn; cleared by the test between figures."""
    from matplotlib.text import Text

    drawn = []
    draw = Text.draw

    def recording(self, renderer):
        draw(self, renderer)
        if self.get_visible() and self.get_text().strip():
            drawn.append((self.get_text(), self.get_window_extent(renderer)))
    monkeypatch.setattr(Text, "draw", recording)
    return drawn


def _check_layout(fig, drawn):
    W, H = fig.canvas.get_width_height()
    assert len(drawn) > 3
    for text, bb in drawn:   # 1 pixel of slack for rounding
        assert bb.x0 >= -1 and bb.y0 >= -1 and bb.x1 <= W + 1 and bb.y1 <= H + 1, f"{text!r} clipped: {bb}"
    for i, (t1, b1) in enumerate(drawn):
        for t2, b2 in drawn[i + 1:]:
            w = min(b1.x1, b2.x1) - max(b1.x0, b2.x0)
            h = min(b1.y1, b2.y1) - max(b1.y0, b2.y0)
            assert w <= 1 or h <= 1, f"{t1!r} overlaps {t2!r}"


def test_variance_figures_keep_every_text_inside_and_apart(deep_study, drawn_texts, tmp_path):
    pytest.importorskip("matplotlib")
    from fastinit._simulate_plots import VarianceFigures

    runs, schemes, acts, _, sizes = deep_study
    figs = VarianceFigures(schemes, sizes, ["C0", "C1", "C2", "C3", "C4", "C5", "C6"])
    try:
        for act in acts:
            drawn_texts.clear()
            fig = figs.draw(runs, act, tmp_path / f"variance_{act}.png")
            texts = [t for t, _ in drawn_texts]
            assert any("(" in t and "at l=50)" in t for t in texts)        # an end label of a vanishing scheme
            assert any(t.startswith("10") and "⁻" in t for t in texts)     # the plain superscript tick labels
            assert not any("$" in t for t in texts)
            _check_layout(fig, drawn_texts)
    finally:
        figs.close()


def test_histogram_grid_keeps_every_text_inside_and_apart(deep_study, drawn_texts, tmp_path):
    pytest.importorskip("matplotlib")
    from fastinit._simulate_plots import HistogramGrid

    runs, schemes, acts, hist, _ = deep_study
    grid = HistogramGrid(schemes, hist, ["C0", "C1", "C2", "C3", "C4", "C5", "C6"], acts)
    try:
        for act in acts:
            drawn_texts.clear()
            fig = grid.draw(runs, schemes, act, hist, tmp_path / f"histograms_{act}.png")
            assert any(t.startswith(("1e−", "1e-")) for t, _ in drawn_texts)   # the offset of a vanishing panel
            _check_layout(fig, drawn_texts)
    finally:
        import matplotlib.pyplot as plt
        plt.close(grid.fig)


def test_long_names_and_narrow_grids_keep_every_text_inside_and_apart(deep_study, drawn_texts, tmp_path):
    """Schemes named at length (three-line panel titles, wide end labels) and a one-panel histogram grid."""
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from fastinit._simulate_plots import HistogramGrid, VarianceFigures

    runs, schemes, _, _, sizes = deep_study
    long = {s: f"{s}_initialization_scheme" for s in schemes}
    renamed = {(long[s], a): r for (s, a), r in runs.items()}
    figs = VarianceFigures(list(long.values()), sizes, ["C0", "C1", "C2", "C3", "C4", "C5", "C6"])
    try:
        fig = figs.draw(renamed, "relu", tmp_path / "variance.png")
        assert max(ax.title.get_text().count("\n") for ax in fig.axes) >= 2
        _check_layout(fig, drawn_texts)
    finally:
        figs.close()
    drawn_texts.clear()
    grid = HistogramGrid(["he"], [1], ["C0"], ["tanh"])
    try:
        _check_layout(grid.draw(runs, ["he"], "tanh", [1], tmp_path / "histograms.png"), drawn_texts)
    finally:
        plt.close(grid.fig)


def test_refilled_figures_equal_new_ones(deep_study, tmp_path):
    """The figures are made once and refilled per activation: relu after tanh must look as relu alone."""
    pytest.importorskip("matplotlib")
    import matplotlib.image

    from fastinit._simulate_plots import write_plots

    runs, schemes, acts, hist, sizes = deep_study
    (tmp_path / "both").mkdir()
    (tmp_path / "alone").mkdir()
    assert acts == ["tanh", "relu"]
    both = write_plots(runs, schemes, acts, hist, tmp_path / "both", sizes)
    write_plots(runs, schemes, ["relu"], hist, tmp_path / "alone", sizes)
    assert [Path(p).name for p in both] == [
        "variance_tanh.png", "histograms_tanh.png", "variance_relu.png", "histograms_relu.png"]
    for name in ("variance_relu.png", "histograms_relu.png"):
        a = matplotlib.image.imread(tmp_path / "both" / name)
        b = matplotlib.image.imread(tmp_path / "alone" / name)
        assert a.shape == b.shape and np.array_equal(a, b), name
    a = matplotlib.image.imread(tmp_path / "both" / "histograms_tanh.png")
    b = matplotlib.image.imread(tmp_path / "both" / "histograms_relu.png")
    assert not np.array_equal(a, b)   # the panels were refilled


def test_log_tick_labels_are_plain_text():
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from fastinit._simulate_plots import PlainLogFormatter

    ax = Figure().add_subplot()
    ax.set_yscale("log")
    ax.set_ylim(0.3, 7)
    f = PlainLogFormatter(labelOnlyBase=False)
    f.set_axis(ax.yaxis)
    f.set_locs([0.3, 7])
    assert f(1e-12) == "10⁻¹²" and f(1e128) == "10¹²⁸" and f(1.0) == "10⁰"
    assert f(2.0) == "2\u2009×\u200910⁰" and f(0.6) == "6\u2009×\u200910⁻¹"


def test_plots_are_skipped_without_matplotlib(monkeypatch, capsys, tmp_path):
    import sys

    from fastinit._simulate_cli import _plots

    monkeypatch.setitem(sys.modules, "matplotlib", None)   # `import matplotlib` raises ImportError
    assert _plots({}, ["he"], ["tanh"], [1], str(tmp_path), dict(depth=1, width=1, batch=1)) == []
    assert "matplotlib not installed" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_simulate_cli_and_info_do_not_load_matplotlib():
    code = ("import sys, contextlib, io\n"
            "import fastinit._simulate_cli\n"
            "from fastinit.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    main(['info'])\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))")
    out = run_python(code, timeout=120)   # outside the checkout: the installed package, not the source tree
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
