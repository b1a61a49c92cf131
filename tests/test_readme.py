"""The README's Python snippets run as written, in order, in a fresh process."""
import os
import re
import subprocess
import sys

README = os.path.join(os.path.dirname(__file__), "..", "README.md")


def python_blocks():
    with open(README) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


def test_readme_has_snippets():
    assert len(python_blocks()) >= 6


def test_readme_snippets_run(tmp_path):
    script = "\n\n".join(python_blocks())
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "path_probs.png").exists() and (tmp_path / "scrapl_warmup" / "probs.pt").exists()
