"""`fastinit simulate --quick` writes its table, JSON, CSV and plots; bad options fail cleanly."""

import csv
import json

import pytest

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
    assert "== tanh ==" in text and "symmetric" in text and "vanishing" in text
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
