# Quick start: `make repro` runs the embedded experiment, `make test` the test suite.
# Both create .venv with pip on first use and install the locked environment; nothing else needs
# installing by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
LOCK := requirements.lock
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: install repro test test-slow check-repro bench lock clean

install: $(INSTALLED)

# Exactly the lock (every package at its version, hash-checked), then the project itself without
# resolving anything again. The lock is for Linux x86_64 and Python 3.11 (README "Dependencies").
$(INSTALLED): $(LOCK) pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --require-hashes --no-deps -r $(LOCK)
	$(PIP) install --quiet --no-deps --no-build-isolation --editable .
	$(PIP) check  # the lock is consistent: every requirement of every package met
	touch $@

repro: install
	PATH="$(CURDIR)/$(BIN):$$PATH" dvc repro

test: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest

test-slow: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -m slow

# A clean clone of HEAD runs `dvc repro`; data stages must match dvc.lock byte for byte, model stages
# as the README's "Reproducibility" says. CHECK_REPRO_ARGS="--kernels oldest" forces old CPU kernels.
check-repro: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python tools/check_repro.py $(CHECK_REPRO_ARGS)

# Each script prints figures measured in one run against a baseline from the same run (README "Performance").
bench: install
	for script in edit_throughput train_throughput ratio_cost startup_memory startup; do \
		PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/$$script.py || exit 1; done

# Re-resolve requirements.lock from pyproject.toml with pip-tools (in its own .venv-lock). Pins already
# in the lock are kept where pyproject.toml allows them; `make lock LOCK_ARGS=--upgrade` moves them all.
lock:
	test -x .venv-lock/bin/pip-compile || { $(PYTHON) -m venv .venv-lock && \
		.venv-lock/bin/python -m pip install --quiet --disable-pip-version-check pip-tools==7.6.2; }
	CUSTOM_COMPILE_COMMAND="make lock" .venv-lock/bin/pip-compile --quiet --extra test --all-build-deps \
		--allow-unsafe --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links \
		$(LOCK_ARGS) --output-file $(LOCK) pyproject.toml

clean:
	rm -rf $(VENV) .venv-lock *.egg-info
