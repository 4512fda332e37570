# `make demo` and `make test` work on a fresh machine with nothing but Python 3.10+:
# they create .venv, install keras_cam (editable) with its test extra into it, and run.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.keras_cam-installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
export KERAS_BACKEND := tensorflow

.PHONY: demo test bench notebook crosscheck mutate install clean

$(STAMP): pyproject.toml setup.cfg
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/keras-cam demo --out demo_output

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile

# Mutation probe (slow, not in CI): plants small bugs one at a time, reports the kill rate.
mutate: $(STAMP)
	$(BIN)/python tools/mutate.py

# Cross-check against Quantus (not part of `make test`): Quantus' own requirements pin
# `opencv-python`, which would install next to our `opencv-python-headless`, so it is installed
# with --no-deps and its imports come from the `crosscheck` extra.
crosscheck: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[crosscheck]"
	$(BIN)/python -m pip install --quiet --no-deps "quantus==0.6.0"
	$(BIN)/python -m pytest -m crosscheck tests/crosscheck

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/speed.py --quick   # writes benchmarks/out/ (ignored by git)

# The quickstart notebook in Jupyter (installs the `notebook` extra into .venv first).
notebook: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[notebook]"
	$(BIN)/jupyter notebook notebooks/quickstart.ipynb

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache demo_output benchmarks/out examples_output
