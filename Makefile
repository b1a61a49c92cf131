# Two commands on a machine with only Python 3:
#   make demo   runs the main job on its built-in defaults
#   make test   runs the test suite
# Each creates .venv and installs the package (with its pinned torch) first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-all coverage bench install clean

# PYTHONWARNINGS=ignore: setuptools prints a notice box for every editable install.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet -e ".[test,train]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/scrapl-graph demo

test: $(STAMP)
	$(BIN)/python -m pytest

test-all: $(STAMP)
	$(BIN)/python -m pytest -m ""

coverage: $(STAMP)
	$(BIN)/python -m pytest --cov=scrapl_graph --cov-report=term

bench: $(STAMP)
	$(BIN)/scrapl-graph bench

clean:
	rm -rf $(VENV) build *.egg-info
