#!/usr/bin/env bash
# Build a virtual environment holding the reference implementation of SCRAPL
# (scrapl-loss 0.1.0 from PyPI, which bundles its own kymatio JTFS) beside this
# package, for tools/make_golden.py and the reference rows of
# `scrapl-graph bench`.
#
# Usage:
#   bash tools/reference_env.sh [VENV_DIR]
#
# VENV_DIR defaults to .venv-ref in the repository root (ignored by git); the
# interpreter that creates it is $PYTHON, default python3 (3.10 or newer).
# An existing VENV_DIR is reused. torch and torchaudio are large downloads
# (several GB with their CUDA libraries).
#
# Steps: torch and torchaudio (pinned together: torchaudio's extension loads
# only with the torch of its minor version) and scrapl-loss==0.1.0 in one
# resolve; then this repository, editable, without letting pip change torch.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${1:-"$repo/.venv-ref"}
python=${PYTHON:-python3}

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
py="$venv/bin/python"

"$py" -m pip install "torch>=2.6,<2.12" "torchaudio>=2.6,<2.12" "scrapl-loss==0.1.0"
"$py" -m pip install --no-deps -e "$repo"

# The package's other requirements (grafx, auraloss, ..., and the test extra),
# read from its installed metadata, with torch and torchaudio held at the
# versions installed above.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$py" - "$tmp/constraints.txt" "$tmp/requirements.txt" <<'PY'
import re
import sys
from importlib.metadata import requires, version

constraints, requirements = sys.argv[1:3]
with open(constraints, "w") as f:
    for name in ("torch", "torchaudio"):
        f.write(f"{name}=={version(name)}\n")
with open(requirements, "w") as f:
    for req in requires("scrapl-graph") or []:
        spec, _, marker = req.partition(";")
        if not marker or re.search(r"""extra\s*==\s*["']test["']""", marker):
            f.write(spec.strip() + "\n")
PY
"$py" -m pip install -c "$tmp/constraints.txt" -r "$tmp/requirements.txt"

# `kymatio.torch` does not import with current scipy; the reference's JTFS is
# reached through `import scrapl` (which puts its bundled kymatio on the path)
# and then the torch frontend module.
"$py" - <<'PY'
import logging

logging.disable(logging.WARNING)
import torch
import scrapl  # noqa: F401
from kymatio.scattering1d.frontend.torch_frontend import TimeFrequencyScatteringTorch  # noqa: F401
import scrapl_graph  # noqa: F401

print(f"reference environment ready: torch {torch.__version__}, scrapl-loss 0.1.0")
PY

cat <<EOF

Check it with:
  $venv/bin/python -c "import scrapl"
  $venv/bin/python -c "import scrapl; from kymatio.scattering1d.frontend.torch_frontend import TimeFrequencyScatteringTorch"
Then, from $repo:
  $venv/bin/python tools/make_golden.py        # golden arrays for tests/data
  $venv/bin/scrapl-graph bench                  # reference rows in the benchmark
EOF
