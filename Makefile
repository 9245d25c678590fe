# Two commands on a fresh machine: `make run` and `make test` (see README.md).
# Both create .venv with pip and install the project with its pinned torch/torchvision.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint format bench clean postgres chromium

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The service on the embedded default, the smoke study, its table and heatmap; Ctrl-C stops all.
run: install
	$(PY) -m service.demo

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

# The browser test drives Debian's Chromium headless.
chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

test: lint postgres chromium
	$(PY) -m pytest

bench: install
	$(PY) -m optim.bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
