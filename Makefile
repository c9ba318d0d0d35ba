# Two entry points for a fresh machine (see README "Quick start"):
#   make demo  - set up .venv, run the pipeline on samples/ with the default model on a local Ray, and its report
#   make test  - set up .venv with the test extras, lint, run the test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= out/demo

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e ".[all,test]"
	touch $@

.PHONY: install demo test lint
install: $(VENV)/.installed

demo: install
	$(BIN)/hcd run --input samples --output $(DEMO_OUT) --seed 0
	$(BIN)/hcd report $(DEMO_OUT)

lint: install
	$(BIN)/ruff check hcd_pipeline tests benchmarks
	$(BIN)/ruff format --check hcd_pipeline tests benchmarks

test: lint
	$(BIN)/python -m pytest -q
