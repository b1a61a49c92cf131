"""The examples run end to end as scripts (tiny settings) and print their result tables."""
import os
import re
import subprocess
import sys
from pathlib import Path


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


def test_optimize_graph_example():
    out = run_example("optimize_graph.py", "--n", "4096", "--sample-rate", "4096", "--J", "9", "--steps", "10",
                      "--max-shift", "256")
    assert "target: AM" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith(("SCRAPL ", "MSS "))}
    assert set(rows) == {"SCRAPL", "MSS"}
    for line in rows.values():
        am_err, fm_err = numbers_of(line.split("s ", 1)[1])[:2]
        assert 0 <= am_err <= 1000 and 0 <= fm_err <= 1000


def test_optimize_graph_example_with_effects_and_no_mss():
    out = run_example("optimize_graph.py", "--n", "4096", "--sample-rate", "4096", "--J", "9", "--steps", "3",
                      "--optimize-effects", "--no-mss")
    assert "SCRAPL " in out and "\nMSS " not in out


def test_train_predictor_example():
    out = run_example("train_predictor.py", "--n", "2048", "--sample-rate", "2048", "--J", "8", "--train", "8",
                      "--val", "4", "--batch-size", "4", "--epochs", "2")
    epoch_rows = [line for line in out.splitlines() if re.match(r"\s+\d+\s+\d+\.\d+s", line)]
    assert len(epoch_rows) == 2
    assert "4 steps" in out and "best validation parameter error" in out


def test_swap_losses_example():
    out = run_example("swap_losses.py", "--n", "2048", "--sample-rate", "2048", "--J", "8", "--steps", "4",
                      "--jtfs-steps", "2", "--max-shift", "128")
    rows = {line.split()[0]: numbers_of(line) for line in out.splitlines()
            if line.split() and line.split()[0] in ("mss", "jtfs", "scrapl")}
    assert set(rows) == {"mss", "jtfs", "scrapl"}
    assert rows["jtfs"][0] == 2 and rows["scrapl"][0] == 4  # steps column
