# Quick start: `make repro` runs the embedded experiment, `make test` the test suite.
# Both create .venv with pip on first use; nothing else needs installing by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install repro test test-slow bench clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --editable '.[test]'
	touch $@

repro: install
	PATH="$(CURDIR)/$(BIN):$$PATH" dvc repro

test: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest

test-slow: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -m slow

# Each script prints figures measured in one run against a baseline from the same run (README "Performance").
bench: install
	for script in edit_throughput train_throughput ratio_cost startup_memory; do \
		PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python bench/$$script.py || exit 1; done

clean:
	rm -rf $(VENV) *.egg-info
