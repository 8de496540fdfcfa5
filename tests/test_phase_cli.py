"""`fastinit phase`: the phase diagram's JSON and PNG, its closed forms, and clean failures on bad options.

Statistical comparisons use t(K-1) standard errors measured across the K networks of a cell, with the
two-sided false-alarm probability written beside each threshold (Bonferroni over the cells).
"""

import argparse
import json

import numpy as np
import pytest
from scipy import stats

from fastinit._phase_cli import add_phase_parser, critical_line, run_phase
from fastinit.cli import main


def _parse(argv):
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command", required=True)
    add_phase_parser(sub)
    return p.parse_args(["phase", *argv])


def _arr(x):
    return np.array([[np.nan if v is None else (np.inf if v == "inf" else v) for v in row] for row in x])


def test_quick_tanh_writes_json_and_png(tmp_path, capsys):
    out = tmp_path / "ph"
    assert main(["phase", "--quick", "--output-dir", str(out)]) == 0
    text = capsys.readouterr().out
    assert "critical line" in text and "phase_tanh.png" in text
    data = json.loads((out / "phase_tanh.json").read_text())
    nb, nw = data["sizes"]["sb2_points"], data["sizes"]["sw2_points"]
    assert len(data["sigma_w2"]) == nw and len(data["sigma_b2"]) == nb
    for part in ("theory", "simulation"):
        for k in ("chi_1", "xi_c"):
            assert _arr(data[part][k]).shape == (nb, nw), (part, k)
    th = _arr(data["theory"]["chi_1"])
    # at sigma_b^2 = 0 and sigma_w^2 < 1 tanh's length collapses to 0 and chi_1 = sigma_w^2 exactly
    sw = np.array(data["sigma_w2"])
    np.testing.assert_allclose(th[0, sw < 1], sw[sw < 1], rtol=1e-12)
    # the critical line at sigma_b^2 = 0 is Poole et al.'s sigma_w^2 = 1
    assert data["critical_line"]["sigma_w2_theory"][0] == pytest.approx(1.0, abs=1e-12)
    assert 0.0 <= data["agreement"]["phase_agrees_fraction"] <= 1.0
    png = (out / "phase_tanh.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_relu_chi1_simulated_vs_closed_form(tmp_path):
    """ReLU: chi_1 = sigma_w^2 / 2 at any bias; the critical line is sigma_w^2 = 2; the simulated chi_1
    (tangent growth, geometric mean over layers L/2..L-1) within t(K-1) standard errors, P = 1e-4 over all
    cells, plus 2/width for the O(1/n) bias of a geometric mean of ratios."""
    out = tmp_path / "ph"
    K, n = 6, 64
    rc = run_phase(_parse(["--quick", "--activation", "relu", "--networks", str(K), "--width", str(n),
                           "--sw2-range", "1,3", "--output-dir", str(out), "--no-plot"]))
    assert rc == 0
    data = json.loads((out / "phase_relu.json").read_text())
    sw = np.array(data["sigma_w2"])
    th = _arr(data["theory"]["chi_1"])
    np.testing.assert_allclose(th, np.broadcast_to(sw / 2, th.shape), rtol=1e-12)
    np.testing.assert_allclose(data["critical_line"]["sigma_w2_theory"], 2.0, atol=1e-9)
    sim, se = _arr(data["simulation"]["chi_1"]), _arr(data["simulation"]["chi_1_se"])
    tq = float(stats.t.ppf(1 - 1e-4 / (2 * sim.size), K - 1))
    assert np.all(np.abs(sim - th) <= tq * se + 2.0 / n * th), (sim, th, se)
    assert not (out / "phase_relu.png").exists()


def test_no_simulate(tmp_path):
    out = tmp_path / "ph"
    assert run_phase(_parse(["--quick", "--activation", "selu", "--no-simulate", "--output-dir", str(out)])) == 0
    data = json.loads((out / "phase_selu.json").read_text())
    assert "simulation" not in data and "agreement" not in data
    assert (out / "phase_selu.png").exists()


def test_critical_line_interpolation():
    sw, sb = np.array([1.0, 2.0, 3.0]), np.array([0.0, 0.1])
    chi = np.array([[0.5, 2.0, 3.0], [0.5, 0.9, 1.1]])
    line = critical_line(sw, sb, chi)
    assert line[0] == pytest.approx(1.5)  # ln chi from -ln 2 to ln 2: halfway
    assert 2.0 < line[1] < 3.0
    assert np.isnan(critical_line(sw, sb[:1], np.array([[0.5, 0.6, 0.7]])))[0]


@pytest.mark.parametrize("argv, words", [
    (["--sw2-range", "0,4"], "--sw2-range must be LO,HI with 0 < LO < HI"),
    (["--sw2-range", "4,1"], "--sw2-range must be LO,HI with 0 < LO < HI"),
    (["--sb2-range=-0.1,0.2"], "--sb2-range"),
    (["--c0", "1"], "--c0 must be 'auto' or a cosine in [-1, 1)"),
    (["--c0", "1.5"], "--c0 must be 'auto' or a cosine"),
    (["--c0", "x"], "--c0 must be 'auto' or a cosine"),
    (["--width", "1"], "--width must be >= 2"),
    (["--networks", "1"], "--networks must be >= 2"),
    (["--depth", "3"], "--depth must be >= 4"),
    (["--activation", "nope"], "--activation:"),
    (["--q0", "0"], "--q0 must be > 0"),
    (["--fit-first", "0"], "--fit-first must lie in"),
])
def test_bad_options(tmp_path, capsys, argv, words):
    out = tmp_path / "never"
    assert run_phase(_parse(["--quick", "--output-dir", str(out), *argv])) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastinit phase: error:") and words in err
    assert not out.exists()  # nothing created before the options are checked


def test_bad_range_syntax(capsys):
    with pytest.raises(SystemExit):
        _parse(["--sw2-range", "1"])
    assert "a range looks like LO,HI" in capsys.readouterr().err
