"""The examples run end to end as scripts (slow) and in process, with tiny settings, and print their result tables."""
import importlib.util
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch


ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def numbers_of(line: str):
    return [float(x) for x in re.findall(r"-?\d+\.?\d*", line)]


@pytest.mark.slow
def test_optimize_graph_example():
    out = run_example("optimize_graph.py", "--n", "4096", "--sample-rate", "4096", "--J", "9", "--steps", "10",
                      "--max-shift", "256")
    assert "target: AM" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith(("SCRAPL ", "MSS "))}
    assert set(rows) == {"SCRAPL", "MSS"}
    for line in rows.values():
        am_err, fm_err = numbers_of(line.split("s ", 1)[1])[:2]
        assert 0 <= am_err <= 1000 and 0 <= fm_err <= 1000


@pytest.mark.slow
def test_optimize_graph_example_with_effects_and_no_mss():
    out = run_example("optimize_graph.py", "--n", "4096", "--sample-rate", "4096", "--J", "9", "--steps", "3",
                      "--optimize-effects", "--no-mss")
    assert "SCRAPL " in out and "\nMSS " not in out


@pytest.mark.slow
def test_train_predictor_example():
    out = run_example("train_predictor.py", "--n", "2048", "--sample-rate", "2048", "--J", "8", "--train", "8",
                      "--val", "4", "--batch-size", "4", "--epochs", "2")
    epoch_rows = [line for line in out.splitlines() if re.match(r"\s+\d+\s+\d+\.\d+s", line)]
    assert len(epoch_rows) == 2
    assert "4 steps" in out and "best validation parameter error" in out


@pytest.mark.slow
def test_swap_losses_example():
    out = run_example("swap_losses.py", "--n", "2048", "--sample-rate", "2048", "--J", "8", "--steps", "4",
                      "--jtfs-steps", "2", "--max-shift", "128")
    rows = {line.split()[0]: numbers_of(line) for line in out.splitlines()
            if line.split() and line.split()[0] in ("mss", "jtfs", "scrapl")}
    assert set(rows) == {"mss", "jtfs", "scrapl"}
    assert rows["jtfs"][0] == 2 and rows["scrapl"][0] == 4  # steps column


# ------------------------------------------------------------------ in process
@pytest.fixture
def example_main(capsys):
    """``example_main(name, *args)``: run ``examples/<name>``'s ``main(args)`` here, return what it printed."""

    def run(name: str, *args: str) -> str:
        spec = importlib.util.spec_from_file_location(f"example_{name[:-3]}", EXAMPLES / name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.main(list(args)) == 0
        return capsys.readouterr().out

    yield run
    torch.set_flush_denormal(False)  # the examples turn it on for their process


def result_rows(out: str, names):
    """{first word: every number in the row}, for the rows whose first word is in ``names``; "nan" counts."""
    rows = {}
    for line in out.splitlines():
        words = line.split()
        if words and words[0] in names:
            values = []
            for word in words[1:]:
                try:
                    values.append(float(word.rstrip("s,")))
                except ValueError:
                    pass
            rows[words[0]] = values
    return rows


def test_optimize_graph_example_in_process(example_main):
    out = example_main("optimize_graph.py", "--n", "2048", "--sample-rate", "2048", "--J", "8", "--steps", "3",
                       "--max-shift", "128")
    assert "target: AM" in out
    rows = result_rows(out, ("SCRAPL", "MSS"))
    assert set(rows) == {"SCRAPL", "MSS"}
    for seconds, am_err, fm_err, am_hz, fm_oct in rows.values():  # the estimate's rates end the row
        assert 0 <= am_err <= 1000 and 0 <= fm_err <= 1000
        assert math.isfinite(am_hz) and math.isfinite(fm_oct)


def test_optimize_graph_example_effects_in_process(example_main):
    out = example_main("optimize_graph.py", "--n", "2048", "--sample-rate", "2048", "--J", "8", "--steps", "2",
                       "--max-shift", "128", "--optimize-effects", "--no-mss")
    rows = result_rows(out, ("SCRAPL", "MSS"))
    assert set(rows) == {"SCRAPL"} and all(math.isfinite(x) for x in rows["SCRAPL"])


def test_train_predictor_example_in_process(example_main):
    out = example_main("train_predictor.py", "--n", "2048", "--sample-rate", "2048", "--J", "8", "--train", "4",
                       "--val", "2", "--batch-size", "2", "--epochs", "2", "--max-shift", "128")
    rows = result_rows(out, ("1", "2"))  # epoch, time, train loss, val MSS, AM err, FM err
    assert sorted(rows) == ["1", "2"]
    assert all(len(row) == 5 and all(math.isfinite(x) for x in row) for row in rows.values())
    assert "4 steps" in out and "best validation parameter error" in out


def test_swap_losses_example_in_process(example_main):
    out = example_main("swap_losses.py", "--n", "2048", "--sample-rate", "2048", "--J", "8", "--steps", "3",
                       "--jtfs-steps", "1", "--max-shift", "128")
    rows = result_rows(out, ("mss", "jtfs", "scrapl"))  # steps, time, ms/step, AM err, FM err, mean
    assert set(rows) == {"mss", "jtfs", "scrapl"}
    assert rows["jtfs"][0] == 1 and rows["mss"][0] == rows["scrapl"][0] == 3
    assert all(len(row) == 6 and all(math.isfinite(x) for x in row) for row in rows.values())


def lfo_rows(out: str, losses):
    """{loss: its errors in percent (rate and depth of each effect)}, checking every row took 2 steps."""
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith(tuple(f"{n} " for n in losses))}
    assert set(rows) == set(losses)
    for line in rows.values():
        assert "2 steps" in line
    return {name: [float(e) for e in re.findall(r"\((\d+\.?\d*) %\)", line)] for name, line in rows.items()}


def test_lfo_tbptt_example_in_process(example_main):
    out = example_main("lfo_tbptt.py", "--seconds", "2", "--sub", "4096", "--J", "8", "--max_steps", "2",
                       "--losses", "scrapl,mss", "--effects", "tremolo,phaser", "--batch", "4")
    for errors in lfo_rows(out, ("scrapl", "mss")).values():
        assert len(errors) == 4 and all(math.isfinite(e) for e in errors)


@pytest.mark.slow
def test_lfo_tbptt_example():
    out = run_example("lfo_tbptt.py", "--seconds", "4", "--sub", "8192", "--J", "9", "--max_steps", "2", "--batch", "4")
    for errors in lfo_rows(out, ("scrapl", "jtfs", "mss")).values():
        assert len(errors) == 2 and all(math.isfinite(e) for e in errors)  # the phaser's rate and depth


@pytest.mark.parametrize("true", [(), ("--true", "tremolo.lfo_rate=4")])
def test_lfo_tbptt_landscape_in_process(example_main, true):
    rate = "4.00" if true else "5.00"  # the default truth, or the one given
    out = example_main("lfo_tbptt.py", "--landscape", "tremolo", "--seconds", "1", "--sub", "4096", "--J", "8",
                       "--windows", "2", "--rates", f"3,{rate}", *true)
    rows = result_rows(out, ("3.00", rate))  # rate: JTFS per path, JTFS full, MSS, JTFS of batch means
    assert set(rows) == {"3.00", rate}
    assert all(len(row) == 4 and all(math.isfinite(x) and x >= 0 for x in row) for row in rows.values())
    # At the true rate only the LFO's phase differs: every loss is below its value at the start.
    assert all(at_true < at_start for at_true, at_start in zip(rows[rate], rows["3.00"]))


@pytest.mark.parametrize("true", ["phaser.rate=1.5", "phaser.lfo_rate=fast", "phaser.lfo_rate="])
def test_lfo_tbptt_rejects_an_unknown_true_value(example_main, true):
    with pytest.raises(SystemExit, match="--true: expected effect.key=value"):
        example_main("lfo_tbptt.py", "--true", true)


def test_lfo_tbptt_source_is_reproducible():
    spec = importlib.util.spec_from_file_location("example_lfo_tbptt", EXAMPLES / "lfo_tbptt.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # The drum hits' noise comes from a seeded generator: two calls give the same minute of audio.
    assert torch.equal(module.music_like_source(1.0, seed=3), module.music_like_source(1.0, seed=3))
