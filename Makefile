# Two commands do all set-up on a fresh machine (Python 3.11, Java 17):
#   make demo   runs the main notebook headless on the embedded default (output under output/)
#   make test   runs make lint (ruff, mypy), then every test: unit, integration (local Event Hubs endpoint, local Spark) and notebooks (nbval),
#               then the Spark matrix (make test-spark-matrix: Spark Connect, pyspark 4.0 with Spark's connectors,
#               a pyspark 3.5 check)
# Both create (or reuse) the virtual environment .venv; the Spark matrix also .venv-spark40 and .venv-spark35.
# make test-spark41 (by hand, not in make test): the Spark 4.0 leg's runs on pyspark 4.1 (.venv-spark41).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NBVAL := --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-current-env

.PHONY: demo lint test test-newest-deps test-spark-matrix test-spark-connect test-spark40 test-spark41 test-spark35 bench clean jars sdk-live-tests

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

# The Spark 4.0 leg (Databricks Runtime 17.3 LTS's Spark) and the Spark 4.1 check (Databricks Runtime 18's): pyspark
# 4.0 / 4.1 in an environment of its own (.venv-spark40, .venv-spark41), the lock's other pins.
VENV40 := .venv-spark40
VENV41 := .venv-spark41
.venv-spark4%/.installed: pyproject.toml requirements.txt requirements-test.txt requirements-spark4%.txt requirements-lock.txt
	test -x .venv-spark4$*/bin/python || $(PYTHON) -m venv .venv-spark4$*
	.venv-spark4$*/bin/python -m pip install --quiet --upgrade pip
	grep -v '^pyspark==' requirements-lock.txt > .venv-spark4$*/constraints.txt
	.venv-spark4$*/bin/python -m pip install --quiet -c .venv-spark4$*/constraints.txt -r requirements-spark4$*.txt -e .
	touch $@

demo: $(STAMP)
	$(BIN)/papermill iot_data_generation.ipynb output/iot_data_generation.ipynb --cwd . -k python3 --log-level WARNING
	@echo "executed notebook: output/iot_data_generation.ipynb; events under output/"

# The notebooks run under a faked wall clock (another date, starting a minute before midnight UTC): their committed
# outputs must not depend on the day or the time of day they were produced (tests/faked_clock.py).
CLOCK := $(BIN)/python tests/faked_clock.py 2031-07-14T23:59:00Z --

# ruff and mypy over the package (configuration in pyproject.toml); the first step of `make test`, a few seconds.
lint: $(STAMP)
	$(BIN)/ruff check iotgen iotgen_helpers.py
	$(BIN)/mypy iotgen iotgen_helpers.py

test: $(STAMP) jars lint
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest tests --ignore=tests/spark
	PATH="$(abspath $(BIN)):$$PATH" $(CLOCK) $(BIN)/python -m pytest iot_data_generation.ipynb notebooks $(NBVAL)
	$(MAKE) test-newest-deps
	$(MAKE) test-spark-matrix

# The libraries whose private API iotgen uses (iotgen/outputs/private_api.py) at their newest release on PyPI, over the
# locked environment: their checks and the tests of what uses them. An upgrade that moves something fails here.
NEWEST := .newest-deps
test-newest-deps: $(STAMP)
	rm -rf $(NEWEST)
	$(BIN)/python -m pip install --quiet --no-deps --upgrade --target $(NEWEST) azure-eventhub pyiceberg
	PYTHONPATH=$(abspath $(NEWEST)) PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q tests/test_private_api.py tests/lakehouse/test_tables.py tests/stream/test_stream_roundtrip.py

# The Spark matrix (docs/spark.md, "Runtimes"). `make test` ran everything but tests/spark above on the newest
# pyspark (.venv, classic: the notebooks' Spark cells). These runs are tests/spark and notebook 03 (nbval, the
# same committed outputs): on the newest pyspark under Spark Connect with no Delta/Iceberg connector (the embedded
# writers' fallback), and on pyspark 4.0 (Databricks Runtime 17.3 LTS's Spark) with Spark's own connectors
# (deps/maven/spark-4.0: Kafka, Delta, Iceberg), classic and Spark Connect. Tests marked own_spark start Spark
# processes of their own (stream workers, the Databricks stand-in): they run in the 4.0 classic run (on 4.1 in
# `make test-spark41`). Then a Spark 3.5 check.
NB03 := notebooks/03_spark_stream_to_lakehouse.ipynb
CONNECT := IOTGEN_SPARK_CONNECT=true
test-spark-matrix: test-spark-connect test-spark40 test-spark35

# One pyspark leg with Spark's connectors: $(call spark_leg,<venv>,<jar bundle>): tests/spark and notebook 03,
# classic (every test) then Spark Connect: the tests marked matrix (Spark's own sinks and sources, the runtime's
# registration; without own_spark) and notebook 03. The rest of tests/spark under Spark Connect ran on the newest
# pyspark (test-spark-connect): it does not depend on the connectors (tests/test_spark_matrix_marks.py).
define spark_leg
	IOTGEN_SPARK_JARS=$(abspath $(JARS))/$(2) PATH="$(abspath $(1))/bin:$$PATH" $(1)/bin/python -m pytest tests/spark -rs
	IOTGEN_SPARK_JARS=$(abspath $(JARS))/$(2) PATH="$(abspath $(1))/bin:$$PATH" $(CLOCK) $(1)/bin/python -m pytest $(NB03) $(NBVAL)
	$(CONNECT) IOTGEN_SPARK_JARS=$(abspath $(JARS))/$(2) PATH="$(abspath $(1))/bin:$$PATH" $(1)/bin/python -m pytest tests/spark -m "matrix and not own_spark" -rs
	$(CONNECT) IOTGEN_SPARK_JARS=$(abspath $(JARS))/$(2) PATH="$(abspath $(1))/bin:$$PATH" $(CLOCK) $(1)/bin/python -m pytest $(NB03) $(NBVAL)
endef

test-spark-connect: $(STAMP)
	$(CONNECT) PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest tests/spark -m "not own_spark"
	$(CONNECT) PATH="$(abspath $(BIN)):$$PATH" $(CLOCK) $(BIN)/python -m pytest $(NB03) $(NBVAL)

test-spark40: $(STAMP) $(VENV40)/.installed jars
	$(call spark_leg,$(VENV40),spark-4.0)

# Spark 4.1 (Databricks Runtime 18's Spark), the same runs with deps/maven/spark-4.1's connectors: a manual check,
# not part of `make test` (CI's time; docs/spark.md, "Runtimes", says when it was last run and what it gave).
test-spark41: $(STAMP) $(VENV41)/.installed jars
	$(call spark_leg,$(VENV41),spark-4.1)

# Spark 3.5 (Databricks Runtime 15.4/16.4 LTS's Spark, without Databricks' backports): what needs no Python data
# source imports and works, the rest fails with one line naming the runtime (tests/spark/test_runtime.py).
VENV35 := .venv-spark35
$(VENV35)/.installed: pyproject.toml requirements.txt requirements-test.txt requirements-spark35.txt requirements-lock.txt
	test -x $(VENV35)/bin/python || $(PYTHON) -m venv $(VENV35)
	$(VENV35)/bin/python -m pip install --quiet --upgrade pip
	grep -v -E '^(pyspark|py4j)==' requirements-lock.txt > $(VENV35)/constraints.txt
	$(VENV35)/bin/python -m pip install --quiet -c $(VENV35)/constraints.txt -r requirements-spark35.txt -e .
	touch $@

test-spark35: $(VENV35)/.installed jars
	IOTGEN_SPARK_JARS=$(abspath $(JARS))/spark-3.5 $(VENV35)/bin/python -m pytest tests/spark/test_runtime.py

# The azure-eventhub SDK's own live test suite (downloaded from PyPI) against the local endpoint: 8-9 minutes
# on 8 workers, so not part of `make test` (docs/emulator.md). SDK_LIVE_ARGS: more pytest arguments (-k, -n ...).
sdk-live-tests: $(STAMP)
	$(BIN)/python tests/sdk_live/run_sdk_live.py $(SDK_LIVE_ARGS)

bench: $(STAMP) jars
	for b in bench/bench_*.py; do PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(VENV40) $(VENV41) $(VENV35) $(JARS) $(NEWEST) .sdk-live output/iot_events_* output/*.ipynb
