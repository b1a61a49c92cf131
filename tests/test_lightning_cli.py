"""The training layer's commands: fit/test through LightningCLI on the shipped configs, and reproduction tables."""
import csv
import json
import os
import pathlib

import pytest

pytest.importorskip("lightning.pytorch")

from scrapl_graph.cli import main  # noqa: E402
from scrapl_graph.lightning import reproduce  # noqa: E402

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "examples" / "configs"
TINY = ["--data.init_args.grid_size=5", "--data.init_args.n_seeds=1", "--data.init_args.batch_size=4",
        "--trainer.max_epochs=1", "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1",
        "--model.val_metrics=[]", "--model.test_metrics=[mss]", "--trainer.num_sanity_val_steps=0",
        "--trainer.limit_test_batches=1", "--trainer.enable_progress_bar=false"]


@pytest.mark.parametrize("task", ["granular_cpu", pytest.param("chirplet_cpu", marks=pytest.mark.slow),
                                  pytest.param("granular_cpu_2s", marks=pytest.mark.slow)])
def test_fit_then_test_from_a_shipped_config(tmp_path, task):
    common = ["--config", str(CONFIGS / f"{task}.yaml"), "--config", str(CONFIGS / "variants" / "mss_log_linear.yaml"),
              f"--trainer.logger.init_args.save_dir={tmp_path}", *TINY]
    assert main(["fit", *common]) == 0
    (last,) = tmp_path.glob("**/last.ckpt")
    assert main(["test", *common, f"--ckpt_path={last}", "--trainer.logger.init_args.version=test"]) == 0
    (results,) = tmp_path.glob("**/test/test_results.json")
    values = json.loads(results.read_text())
    assert values["n_examples"] >= 1 and 0 <= values["theta_l1"] <= 1000


def test_a_missing_lightning_extra_is_named(monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_lightning(name, *args, **kwargs):
        if name.startswith("lightning") or (name == "lightning.cli" or "lightning.cli" in name):
            raise ImportError("No module named 'lightning'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_lightning)
    monkeypatch.delitem(__import__("sys").modules, "scrapl_graph.lightning.cli", raising=False)
    assert main(["fit", "--config", "x.yaml"]) == 2
    assert "scrapl-graph[train]" in capsys.readouterr().err


def _fake_run(folder, theta_l1, seconds):
    folder.mkdir(parents=True)
    (folder / "test_results.json").write_text(json.dumps({"theta_l1": theta_l1, "theta_l1/a": theta_l1, "mss": 1.0,
                                                          "encoder_weights": 1000}))
    with open(folder / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["epoch", "step", "val/theta_l1", "val/elapsed_s", "time/elapsed_s"])
        writer.writeheader()
        for step in range(4):  # training steps 0.125 s apart, then a long validation gap
            writer.writerow({"epoch": 0, "step": step, "time/elapsed_s": 1.0 + 0.125 * step})
        writer.writerow({"epoch": 0, "step": 4, "time/elapsed_s": 9.0})
        writer.writerow({"epoch": 0, "step": 5, "val/theta_l1": 2 * theta_l1, "val/elapsed_s": seconds / 2})
        writer.writerow({"epoch": 1, "step": 10, "val/theta_l1": theta_l1, "val/elapsed_s": seconds})


def test_reproduction_table_has_mean_and_95_percent_interval(tmp_path):
    for seed, value in enumerate((100.0, 110.0, 120.0)):
        _fake_run(tmp_path / "scrapl" / f"seed_{seed}", value, 60.0 + seed)
        _fake_run(tmp_path / "mss" / f"seed_{seed}", 2 * value, 30.0)
    table = reproduce.summarize(str(tmp_path), ["scrapl", "mss"], [0, 1, 2])
    mean, half = reproduce.confidence_interval([100.0, 110.0, 120.0])
    assert mean == 110.0 and half == pytest.approx(4.303 * 10 / 3 ** 0.5, rel=1e-3)  # t(0.975, 2) = 4.303
    assert f"{mean:.4g} ± {half:.2g}" in table and "220 ± " in table
    assert os.path.isfile(tmp_path / "curves.png") and os.path.isfile(tmp_path / "results.csv")
    assert "step_ms" in table and "125 ± 0" in table  # the median step, not the validation gap
    assert "encoder_weights" in table and "1000 ± 0" in table
    assert reproduce.confidence_interval([5.0]) == (5.0, 0.0)


def test_reproduction_config_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: t.yaml\nseeds: [0]\nvariants: {a: not-a-list}\n")
    with pytest.raises(ValueError, match="lists of command-line arguments"):
        reproduce.load_spec(str(bad))
    bad.write_text("seeds: [0]\n")
    with pytest.raises(ValueError, match="task, seeds and variants"):
        reproduce.load_spec(str(bad))


@pytest.mark.slow
def test_the_cpu_config_finishes_with_its_warmup(tmp_path):
    """The whole CPU-scale granular run (about 4 minutes here), theta-IS warmup included."""
    assert main(["fit", "--config", str(CONFIGS / "granular_cpu.yaml"), f"--trainer.logger.init_args.save_dir={tmp_path}",
                 "--trainer.enable_progress_bar=false"]) == 0
    (probs,) = tmp_path.glob("**/theta_is/probs.pt")
    (last,) = tmp_path.glob("**/last.ckpt")
    assert probs.stat().st_size > 0 and last.stat().st_size > 0


def test_step_times_of_a_reproduction_config(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    tiny = ", ".join(a for a in TINY if a.startswith("--data"))
    spec.write_text(f"task: {CONFIGS / 'granular_cpu.yaml'}\nseeds: [0]\nvariants:\n"
                    f"  p_loss: [--config, {CONFIGS / 'variants' / 'p_loss.yaml'}, {tiny}]\n"
                    f"  log_linear: [--config, {CONFIGS / 'variants' / 'mss_log_linear.yaml'}, {tiny}]\n")
    assert main(["step-times", str(spec), "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [r[0] for r in rows] == ["p_loss", "log_linear"] and all(float(r[1]) > 0 for r in rows)
