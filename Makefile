# medmask: the two commands of the README.
#   make demo   set up .venv and run the main job on a built-in synthetic dataset
#   make test   set up .venv, check the import layers and run the whole test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: setup demo test test-slow lint bench bench-all reliability clean

setup: $(STAMP)

# torch is pinned and installed first so that no CUDA wheels are pulled in
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt torch
	$(PIP) install -q -c constraints.txt -e ".[all]"
	# PyPI's torchvision (pulled in by a benchmark peer's dependency) does not load beside the
	# pinned CPU torch ("operator torchvision::nms does not exist"); nothing here needs it
	$(PIP) uninstall -q -y torchvision || true
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py $(ARGS)

test: $(STAMP)
	$(VENV)/bin/ruff check medmask medmask_monai tests benchmarks examples
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -n 2 -q $(ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -n 2 -q --runslow $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check medmask medmask_monai tests benchmarks examples
	$(VENV)/bin/ruff format --check medmask medmask_monai tests benchmarks examples
	$(VENV)/bin/lint-imports  # the layers of docs/architecture.md ([tool.importlinter])

bench: $(STAMP)
	$(PY) benchmarks/bench_format.py $(ARGS)

# every benchmark, each writing its Markdown table (and pictures) into bench_output/
bench-all: $(STAMP)
	$(PY) benchmarks/bench_format.py
	$(PY) benchmarks/bench_monai.py
	$(PY) benchmarks/bench_interop.py
	$(PY) benchmarks/bench_remote.py
	$(PY) benchmarks/bench_pack.py
	$(PY) benchmarks/bench_stats.py
	$(PY) benchmarks/bench_patches.py
	$(PY) benchmarks/bench_window.py

reliability: $(STAMP)
	$(PY) benchmarks/reliability_report.py $(ARGS)

clean:
	rm -rf $(VENV) demo_output bench_output .pytest_cache .hypothesis
