# The two commands of the README: `make demo` runs the product, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export IDP_ISSUER ?= http://127.0.0.1:5000

.PHONY: setup demo test lint typecheck check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	bash scripts/demo.sh

test: setup
	bash scripts/test.sh

lint: setup
	$(BIN)/ruff check idp relying_party_demo tests bench
	$(BIN)/ruff format --check idp relying_party_demo tests bench

typecheck: setup
	$(BIN)/mypy

clean:
	rm -rf $(VENV) instance test-artifacts
