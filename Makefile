# eddy: the two commands that matter are `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test lint fmt clean kafka-jars kafka-up kafka-down

install: $(STAMP)

# Re-installs only when the project metadata changes (idempotent).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m eddy.warmup  # numba kernels compiled now, not in the first run
	@touch $(STAMP)

run: install
	$(BIN)/eddy run

test: install kafka-jars
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy eddy

fmt: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# A real single-node Kafka broker (KRaft) on 127.0.0.1:<free port>; state in .kafka/.
kafka-jars:
	scripts/kafka.sh jars

kafka-up: kafka-jars
	scripts/kafka.sh up

kafka-down:
	scripts/kafka.sh down

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache
