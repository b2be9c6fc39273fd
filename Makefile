# The two commands of the README: `make demo` runs the product, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export IDP_ISSUER ?= http://127.0.0.1:5000

.PHONY: setup demo test lint typecheck check clean translations

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

# Re-extract the English source strings of the provider and the portal, merge them into the
# catalogues, and compile the .mo files that are committed beside them
# (docs/operations/languages.md).
BABEL_KEYWORDS := -k _l -k N_
translations: setup
	$(BIN)/pybabel extract -F babel.cfg $(BABEL_KEYWORDS) --no-wrap -o idp/translations/messages.pot .
	$(BIN)/pybabel update -i idp/translations/messages.pot -d idp/translations --no-wrap --ignore-obsolete
	$(BIN)/pybabel compile -d idp/translations --statistics
	$(BIN)/pybabel extract -F babel-portal.cfg $(BABEL_KEYWORDS) --no-wrap -o relying_party_demo/translations/messages.pot .
	$(BIN)/pybabel update -i relying_party_demo/translations/messages.pot -d relying_party_demo/translations --no-wrap --ignore-obsolete
	$(BIN)/pybabel compile -d relying_party_demo/translations --statistics

clean:
	rm -rf $(VENV) instance test-artifacts
