# Fresh machine: `make demo` (main job) and `make test` (test suite) set everything up themselves.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint demo clean

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -n 2

lint: $(STAMP)
	$(BIN)/ruff check .

demo: $(STAMP)
	$(BIN)/cnnlab zoo
	$(BIN)/cnnlab summary alexnet-onetower --input 3x227x227
	$(BIN)/cnnlab summary lenet5 --explain

clean:
	rm -rf $(VENV) build *.egg-info
