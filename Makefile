# Two commands for a fresh machine: `make demo` and `make test`.
# Both create or reuse .venv in the repo root. torch is installed first (TORCH_SPEC) so
# that pip never resolves a CUDA build of torch on a CPU machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev,serve
PY := $(VENV)/bin/python
STAMP := $(VENV)/.apexmer-installed
DEMO_DIR ?= demo

.PHONY: demo test test-all lint bench browser-deps clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

# The browser test needs Debian's chromium; install it when we may (root with apt), never a
# downloaded browser. Without it the browser test is skipped with a reason.
browser-deps:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian chromium for the browser test"; \
	  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

demo: $(STAMP)
	$(VENV)/bin/apexmer demo --out $(DEMO_DIR)

test: $(STAMP) browser-deps
	$(PY) -m pytest -m "not slow" -q

test-all: $(STAMP) browser-deps
	$(PY) -m pip install -q -e ".[dev,serve,distributed]"
	RAY_AUTH_MODE=disabled $(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

clean:
	rm -rf $(DEMO_DIR) .pytest_cache .ruff_cache
