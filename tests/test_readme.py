"""The README's Python snippets run as written, in order, in a fresh process (slow), and shrunk in process."""
import math
import os
import re
import subprocess
import sys

import pytest
import torch

ROOT = os.path.join(os.path.dirname(__file__), "..")
README = os.path.join(ROOT, "README.md")

# Smaller signals, filterbanks and runs for the in-process check, in order. Each must match the README: when a
# snippet changes, update its entry here.
SHRINK = [
    ("steps=100", "steps=3"),
    ("epochs=2", "epochs=1"),
    ("J=10, Q1=8, Q2=2, J_fr=3, Q_fr=2", "J=6, Q1=1, Q2=1, J_fr=1, Q_fr=1"),
    ("J=10", "J=6, Q1=1, Q2=1, J_fr=1, Q_fr=1"),
    ('save_dir="scrapl_warmup",', 'save_dir="scrapl_warmup", n_iter=2,'),
    ("32768", "4096"),
    ("48000", "4096"),
    ("J=12", "J=9"),
]


def python_blocks():
    with open(README) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


def test_readme_has_snippets():
    assert len(python_blocks()) >= 6


@pytest.mark.slow
def test_readme_snippets_run(tmp_path):
    script = "\n\n".join(python_blocks())
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1",  # this checkout, one torch thread
               PYTHONPATH=os.path.abspath(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "path_probs.png").exists() and (tmp_path / "scrapl_warmup" / "probs.pt").exists()


def test_readme_snippets_run_shrunk(in_tmp_dir, capsys):
    """The same snippets with tiny settings, in this process: every call in them still exists and works."""
    script = "\n\n".join(python_blocks())
    for old, new in SHRINK:
        assert old in script, f"README snippets no longer contain {old!r}: update SHRINK"
        script = script.replace(old, new)
    names = {}
    exec(compile(script, "README.md", "exec"), names)
    assert math.isfinite(names["result"].final_param_error)
    assert len(names["run"].history["val/theta_l1"]) == 1 and names["run"].steps == 2
    torch.testing.assert_close(names["s"], names["S"][..., 42, :, :])
    assert torch.isfinite(names["x_hat"].grad).all()
    assert names["probs"].sum().item() == pytest.approx(1.0)
    assert (in_tmp_dir / "path_probs.png").stat().st_size > 0
    assert (in_tmp_dir / "scrapl_warmup" / "probs.pt").exists()
    assert capsys.readouterr().out.strip()  # the snippets print their results
