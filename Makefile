# Two commands on a fresh machine: `make run` and `make test` (see README.md).
# Both create .venv with pip and install the project with its pinned torch/torchvision.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint format bench clean postgres

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) -m optim.demo

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# The PostgreSQL lane needs the server binaries (Debian's package; tests start a private cluster).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql; }

test: lint postgres
	$(PY) -m pytest

bench: install
	$(PY) -m optim.bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
