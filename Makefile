# Two entry points (see README): `make demo` runs the main job, `make test` runs the tests.
# Both create .venv and install the project into it on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test recipe clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e ".[dev,video]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/jax-interact demo --out out/demo

recipe: $(STAMP)
	$(BIN)/python benchmarks/recipe.py --out out/recipe --checkpoint latest

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist worksteal tests

clean:
	rm -rf $(VENV) out
