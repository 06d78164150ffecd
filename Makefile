# Two commands do all set-up on a fresh machine (Python 3.11, Java 17):
#   make demo   runs the main notebook headless on the embedded default (output under output/)
#   make test   runs every test: unit, integration (local Event Hubs endpoint, local Spark) and notebooks (nbval)
# Both create (or reuse) the virtual environment .venv.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NBVAL := --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-current-env

.PHONY: demo test bench clean jars

# JVM artifacts for the tests (deps/maven/<bundle>/pom.xml -> .jars/<bundle>/*.jar), from Maven Central.
JARS := .jars
BUNDLES := $(patsubst deps/maven/%/pom.xml,$(JARS)/%/.done,$(wildcard deps/maven/*/pom.xml))
$(JARS)/%/.done: deps/maven/%/pom.xml
	rm -rf $(JARS)/$*
	mvn -q -B -f $< dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=$(abspath $(JARS)/$*)
	touch $@
jars: $(BUNDLES)

$(STAMP): pyproject.toml requirements.txt requirements-test.txt requirements-dev.txt requirements-lock.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements-lock.txt -r requirements-dev.txt -e .
	touch $(STAMP)

# The Spark 4.0 leg (Databricks Runtime 17.3 LTS's Spark): pyspark 4.0 in its own environment, the lock's other pins.
VENV40 := .venv-spark40
$(VENV40)/.installed: pyproject.toml requirements.txt requirements-test.txt requirements-spark40.txt requirements-lock.txt
	test -x $(VENV40)/bin/python || $(PYTHON) -m venv $(VENV40)
	$(VENV40)/bin/python -m pip install --quiet --upgrade pip
	grep -v '^pyspark==' requirements-lock.txt > $(VENV40)/constraints.txt
	$(VENV40)/bin/python -m pip install --quiet -c $(VENV40)/constraints.txt -r requirements-spark40.txt -e .
	touch $@

demo: $(STAMP)
	$(BIN)/papermill iot_data_generation.ipynb output/iot_data_generation.ipynb --cwd . -k python3 --log-level WARNING
	@echo "executed notebook: output/iot_data_generation.ipynb; events under output/"

# The notebooks run under a faked wall clock (another date, starting a minute before midnight UTC): their committed
# outputs must not depend on the day or the time of day they were produced (tests/faked_clock.py).
CLOCK := $(BIN)/python tests/faked_clock.py 2031-07-14T23:59:00Z --

test: $(STAMP) jars
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest tests
	PATH="$(abspath $(BIN)):$$PATH" $(CLOCK) $(BIN)/python -m pytest iot_data_generation.ipynb notebooks $(NBVAL)

bench: $(STAMP)
	for b in bench/bench_*.py; do PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(JARS) output/iot_events_* output/*.ipynb
