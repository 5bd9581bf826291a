# The two commands a user needs are `make demo` and `make test`; both set everything up first.
SHELL := /bin/bash
# The interpreter .venv is made from: Debian's python3.11 where there is one, else python3. Debian builds
# it with PGO and LTO; a default source build (pyenv's, without --enable-optimizations) runs the suite's
# Python 10-20% slower, and nearly all of the suite's CPU is Python (docs/testing.md). PYTHON=... picks another.
PYTHON ?= $(firstword $(wildcard /usr/bin/python3.11) python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KERNEL := mms-notebooks
# Exact versions of everything pip installs, generated from pyproject.toml by `make lock`.
LOCK := constraints.txt
TRITON_REQ := tritonserver-requirements.txt
# Test files run in parallel, a whole file per worker (so its module fixtures are made once): most
# tests wait on a stack, a kernel or a browser. tests/conftest.py starts the slowest files first. Five
# on 2 cores: one of them spends its minutes waiting on a kubelet-like ConfigMap delay
# (test_configmap_delay.py), and a fifth stack's CPU costs less than the waits it fills (pytest 8:00 -> 7:21,
# docs/testing.md).
TEST_WORKERS ?= 5

.PHONY: help setup demo test test-unit lint lab up down status bench clean lock

help:
	@echo "make demo    set up, start the local stack, run the walkthrough (notebooks 00-07; 99_cleanup: python -m helpers.walkthrough --only 99)"
	@echo "make test    set up, lint and run the whole test suite ($(TEST_WORKERS) workers; TEST_WORKERS=1 for one)"
	@echo "make test-unit   the tests that start nothing (seconds): the edit loop"
	@echo "make setup   install Debian packages, build the control plane and Triton's pytorch and tensorflow backends once, create .venv"
	@echo "make lab     JupyterLab on 127.0.0.1 with the '$(KERNEL)' kernel and the stack's environment"
	@echo "make up | down | status   the embedded local stack"
	@echo "make bench   print the benchmark figures"
	@echo "make clean   remove build/ and .venv (the stack's data in MMS_STATE_DIR is kept)"
	@echo "make lock    regenerate $(LOCK) from pyproject.toml (pip-tools' pip-compile)"

setup: $(STAMP)
	@bash scripts/setup-system.sh
	@bash scripts/build-kube.sh
	@# Optional: without it TorchScript is served by the Python-based backend (`make status` says which).
	@TORCH_PYTHON=$(BIN)/python bash scripts/build-triton-pytorch.sh \
	  || echo "setup: going on without Triton's pytorch backend; TorchScript uses the Python-based one"
	@# Optional too: without it TensorFlow GraphDef is served by the Python-based backend.
	@TF_PYTHON=$(BIN)/python bash scripts/build-triton-tensorflow.sh \
	  || echo "setup: going on without Triton's tensorflow backend; GraphDef uses the Python-based one"

$(STAMP): pyproject.toml $(LOCK) $(TRITON_REQ) scripts/install-locked.py Makefile
	@bash scripts/setup-system.sh
	@# .venv is made anew from a venv of the lock's exact wheels kept in MMS_CACHE_DIR/venvs (installed by
	@# two pips side by side and compiled, once), its files hard-linked; then the project, editable: ~8 s
	@# here instead of ~50, and offline after the first time (the script says how and why). $(TRITON_REQ)
	@# goes with --no-deps as all else: only its tritonserver binary is used, and its own pins conflict
	@# with the rest.
	$(PYTHON) scripts/install-locked.py --venv $(VENV) $(LOCK) $(TRITON_REQ) --project '.[local,lab,dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python ($(KERNEL))" >/dev/null
	@touch $(STAMP)

up: setup
	$(BIN)/python -m helpers.local up

down:
	$(BIN)/python -m helpers.local down

status:
	$(BIN)/python -m helpers.local status

demo: setup
	$(BIN)/python -m helpers.local up
	$(BIN)/python -m helpers.walkthrough

test: setup lint
	@# The project's own modules, compiled once: every kernel, agent and controller the suite starts
	@# imports them, and where PYTHONDONTWRITEBYTECODE is set each would compile them again.
	$(BIN)/python -m compileall -qq -j 0 helpers benchmarks tests
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

test-unit: $(STAMP) lint
	$(BIN)/python -m pytest tests/unit

lint: $(STAMP)
	$(BIN)/ruff check .

lab: setup
	$(BIN)/python -m helpers.local up
	$(BIN)/python -m helpers.lab

bench: setup
	$(BIN)/python benchmarks/run_all.py

# pip-tools in a venv of its own (build/), so it never changes what .venv holds. The lock resolves
# from PyPI plus this machine's CPU torch file (pip's find-links), like `make setup` itself.
lock:
	$(PYTHON) -m venv build/pip-tools
	build/pip-tools/bin/pip install -q --disable-pip-version-check 'pip-tools==7.5.2'
	CUSTOM_COMPILE_COMMAND='make lock' build/pip-tools/bin/pip-compile --quiet --extra local --extra lab --extra dev --strip-extras \
	  --no-emit-index-url --no-emit-find-links --annotation-style line \
	  -o $(LOCK) pyproject.toml

clean:
	rm -rf build $(VENV) *.egg-info
