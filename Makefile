# Two entry points, both self-installing: `make demo` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
CORE   := $(VENV)/.installed-core
STAMP  := $(VENV)/.installed
TORCH  ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: demo test test-slow test-all lint bench clean

# The demo needs the package and peft; the tests add the dev tools and the extras.
$(CORE): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	# torch first: a bare `torch` requirement would pull the CUDA build.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q --no-compile $(TORCH)
	$(PY) -m pip install -q --no-compile -e '.[train]'
	touch $(CORE)

$(STAMP): $(CORE)
	$(PY) -m pip install -q --no-compile -e '.[dev]'
	touch $(STAMP)

demo: $(CORE)
	$(VENV)/bin/nlakit demo

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check nlakit tests bench
	$(VENV)/bin/ruff format --check nlakit tests bench

bench: $(STAMP)
	$(PY) bench/early_exit.py
	$(PY) bench/generation.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
