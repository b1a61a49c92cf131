"""The scrapl-graph command: each subcommand runs, bad input gives one line on stderr and exit code 2."""
import json
import os

import pytest
import torch

from scrapl_graph.cli import main

CONFIG = """
graph:
  num_samples: 2048
  processors:
    chirplet:
      class_path: ChirpletSynth
      init_args: {sample_rate: 2048, num_samples: 2048, f0_hz: 256, am_range: [2.0, 8.0], fm_range: [2.0, 4.0],
                  max_shift: 100, seed: 3, deterministic: true}
  chain: [chirplet]
loss:
  class_path: scrapl
  init_args: {shape: 2048, J: 6, Q1: 4, Q2: 1, J_fr: 2, Q_fr: 1, n_theta: 2}
target_theta: {chirplet: {theta_am: 3.0, theta_fm: 3.0}}
"""


@pytest.mark.slow
def test_demo_writes_every_output(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--n", "2048", "--sample-rate", "2048", "--J", "6", "--steps", "3",
               "--jtfs-steps", "1", "--max-shift", "100", "--no-progress"])
    assert rc == 0
    table = capsys.readouterr().out
    for method in ("scrapl", "mss", "jtfs"):
        assert f"\n{method}" in table
        assert (out / f"estimate_{method}.wav").stat().st_size > 4000
    for name in ("target.wav", "loss_curves.png", "path_probs.png", "results.json"):
        assert (out / name).stat().st_size > 0
    results = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in results["results"]] == ["scrapl", "mss", "jtfs"]
    assert not [f for f in os.listdir(out) if f.startswith(".tmp")]


def test_demo_runs_a_chosen_method(tmp_path, capsys):
    """The demo subcommand in brief: one cheap method, its table row and its files (every method: tests/test_demo.py)."""
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--methods", "mss", "--n", "2048", "--sample-rate", "2048", "--J", "6",
               "--steps", "2", "--max-shift", "100", "--am", "4", "--seed", "1", "--no-progress"])
    assert rc == 0
    table = capsys.readouterr().out
    assert "theta_AM = 4 Hz" in table and "\nmss" in table and "\nscrapl" not in table
    results = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in results["results"]] == ["mss"] and results["results"][0]["steps"] == 2
    assert results["settings"]["seed"] == 1 and results["target"]["am_hz"] == 4.0
    assert (out / "estimate_mss.wav").stat().st_size > 4000 and not (out / "estimate_jtfs.wav").exists()


def test_warmup_shards_resume_and_write_probs(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(CONFIG)
    out = tmp_path / "warm"
    assert main(["warmup", str(config), "--out", str(out), "--end", "10", "--no-progress"]) == 0
    assert not (out / "probs.pt").exists()
    assert main(["warmup", str(config), "--out", str(out), "--no-progress", "--plot"]) == 0
    probs = torch.load(out / "probs.pt")["probs"]
    assert torch.isclose(probs.sum(), torch.tensor(1.0, dtype=probs.dtype))
    assert (out / "path_probs.png").exists()
    assert "probs.pt" in capsys.readouterr().out


def test_warmup_of_a_loss_sum_runs_on_its_scrapl_term(tmp_path, capsys):
    scrapl = "loss:\n  class_path: scrapl\n  init_args: {shape: 2048, J: 6, Q1: 4, Q2: 1, J_fr: 2, Q_fr: 1, n_theta: 2}\n"
    in_a_sum = ("loss:\n  class_path: loss_sum\n  init_args:\n    terms:\n      scrapl:\n        class_path: scrapl\n"
                "        init_args: {shape: 2048, J: 6, Q1: 4, Q2: 1, J_fr: 2, Q_fr: 1, n_theta: 2}\n"
                "      mss: mss_linear\n    weights: {mss: 0.1}\n")
    assert scrapl in CONFIG
    config = tmp_path / "sum.yaml"
    config.write_text(CONFIG.replace(scrapl, in_a_sum))
    assert main(["warmup", str(config), "--out", str(tmp_path / "warm"), "--end", "2", "--no-progress"]) == 0
    assert "2 of 28 paths done" in capsys.readouterr().out


def test_jtfs_subcommand(capsys):
    assert main(["jtfs", "--n", "4096", "--J", "6", "--paths", "3"]) == 0
    assert "second-order paths: 135" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["demo", "--am", "9"], "am_hz=9.0 must lie inside"),
        (["demo", "--steps", "0"], "positive integer"),
        (["demo", "--methods", "nope"], "subset of"),
        (["demo", "--n", "500"], "shorter than 2\\*\\*J"),
        (["warmup", "missing.yaml"], "does not exist"),
        (["bench", "--batch", "x"], "positive integer"),
        (["jtfs", "--J", "20", "--n", "1024"], "shorter than"),
        (["frobnicate"], "unrecognized arguments"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert pytest.importorskip("re").search(message, err)


def test_bad_config_files(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("graph: [unclosed")
    assert main(["warmup", str(bad)]) == 2
    not_scrapl = tmp_path / "mss.yaml"
    not_scrapl.write_text(CONFIG.replace("class_path: scrapl\n  init_args: {shape: 2048, J: 6, Q1: 4, Q2: 1, J_fr: 2, Q_fr: 1, n_theta: 2}", "mss"))
    assert main(["warmup", str(not_scrapl)]) == 2
    assert "must be a SCRAPL loss" in capsys.readouterr().err


def test_python_dash_m_runs_the_cli(monkeypatch, capsys):
    import runpy
    import sys

    monkeypatch.setattr(sys, "argv", ["scrapl-graph", "jtfs", "--n", "1024", "--J", "4", "--paths", "1"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("scrapl_graph", run_name="__main__")
    assert exit_info.value.code == 0
    assert "second-order paths" in capsys.readouterr().out
