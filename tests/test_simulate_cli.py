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
