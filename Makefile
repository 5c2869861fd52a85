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

# The main job: seed 003's LeNet trained on MNIST (fetched and checked on first use) to >= 99% test
# accuracy, evaluated, and reported; curves, checkpoints and the report land in runs/demo.
demo: $(STAMP)
	$(BIN)/cnnlab train lenet5-relu --data mnist --recipe mnist-fast --epochs 5 --out runs/demo --overwrite
	$(BIN)/cnnlab eval runs/demo/best.pt --data mnist
	$(BIN)/cnnlab report lenet5-relu --run runs/demo --out runs/demo/report.html
	@echo "curves: runs/demo/curves.png  checkpoints: runs/demo/best.pt, runs/demo/last.pt  report: runs/demo/report.html"

clean:
	rm -rf $(VENV) build *.egg-info
