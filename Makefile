# Two commands do all set-up on a fresh machine (Python 3.11, Java 17):
#   make demo   runs the main notebook headless on the embedded default (output under output/)
#   make test   runs every test: unit, integration (local Event Hubs endpoint, local Spark) and notebooks (nbval)
# Both create (or reuse) the virtual environment .venv.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NBVAL := --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-current-env

.PHONY: demo test bench clean

$(STAMP): pyproject.toml requirements.txt requirements-dev.txt requirements-lock.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements-lock.txt -r requirements-dev.txt -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/papermill iot_data_generation.ipynb output/iot_data_generation.ipynb --cwd . -k python3 --log-level WARNING
	@echo "executed notebook: output/iot_data_generation.ipynb; events under output/"

test: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest tests iot_data_generation.ipynb notebooks $(NBVAL)

bench: $(STAMP)
	for b in bench/bench_*.py; do PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) output/iot_events_* output/*.ipynb
