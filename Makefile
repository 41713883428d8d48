# medmask: the two commands of the README.
#   make demo   set up .venv and run the main job on a built-in synthetic dataset
#   make test   set up .venv, check the import layers and run the whole test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: setup demo test test-slow test-realdata lint bench bench-compare bench-all reliability clean

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

# only the tests on the sample data of ../shared/data (MEDMASK_REAL_CASE, MEDMASK_INTERCHANGE)
test-realdata: $(STAMP)
	$(PY) -m pytest -n 2 -q -m realdata $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check medmask medmask_monai tests benchmarks examples
	$(VENV)/bin/ruff format --check medmask medmask_monai tests benchmarks examples
	$(VENV)/bin/lint-imports  # the layers of docs/architecture.md ([tool.importlinter])

bench: $(STAMP)
	$(PY) benchmarks/bench_format.py $(ARGS)

# make bench of this tree and of medmask 0.4.0 side by side, in one run (ARGS=--ref COMMIT ...)
bench-compare: $(STAMP)
	$(PY) benchmarks/side_by_side.py $(ARGS)

# every benchmark (each checks that medmask's output equals its peer's before timing, and
# writes its Markdown into bench_output/), then the tables README.md and docs/ quote
# (their <!-- bench:NAME --> regions) and charts copied from there: benchmarks/update_docs.py
bench-all: $(STAMP)
	$(PY) benchmarks/bench_format.py --repeat 7
	$(PY) benchmarks/bench_monai.py
	$(PY) benchmarks/bench_interop.py --repeat 5
	$(PY) benchmarks/bench_remote.py
	$(PY) benchmarks/bench_pack.py
	$(PY) benchmarks/bench_ingest.py
	$(PY) benchmarks/bench_stats.py --repeat 5
	$(PY) benchmarks/bench_patches.py
	$(PY) benchmarks/bench_catalog.py
	$(PY) benchmarks/bench_window.py
	$(PY) benchmarks/side_by_side.py --rounds 2
	$(PY) benchmarks/update_docs.py

# the reliability campaign: bench_output/reliability.md (ARGS=--write-docs: docs/reliability.md)
reliability: $(STAMP)
	$(PY) benchmarks/reliability_report.py $(ARGS)

clean:
	rm -rf $(VENV) demo_output bench_output .pytest_cache .hypothesis
