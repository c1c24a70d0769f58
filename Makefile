# Two commands: `make demo` and `make test`. Each creates .venv with python3 -m venv and pip.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: demo test install bench mutation clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# pyproject.toml gives compatible ranges; constraints.txt pins the tested versions, torch==2.13.0 among
# them (its CPU wheel is what pip finds locally, never a multi-GB CUDA build).
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/plainrnn demo

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/plainrnn bench

# Mutation testing of the numerical core (path/, stiefel/, optim/; config in pyproject.toml
# [tool.mutmut]). Resumes where it stopped; `$(BIN)/mutmut browse` shows each survivor. Slow: not in CI.
MUTATION_STAMP := $(VENV)/.installed-mutation
JOBS ?= 2
$(MUTATION_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev,mutation]"
	touch $(MUTATION_STAMP)

mutation: $(MUTATION_STAMP)
	# its own kernel cache: the mutants' copy of csrc/ would otherwise rebuild the one the tests use
	OMP_NUM_THREADS=1 XDG_CACHE_HOME=$(CURDIR)/mutants/.cache $(BIN)/mutmut run --max-children $(JOBS)
	$(BIN)/python tools/mutation_summary.py

clean:
	rm -rf $(VENV) runs mutants
