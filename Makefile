# Everything a fresh machine (Python 3.11 + pip) needs: `make demo`, `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e ".[dev]"
	touch $(STAMP)

demo: install
	$(VENV)/bin/hssl demo

test: install
	$(PY) -m pytest -q

# ruff (pyflakes, isort, bugbear) and mypy (strict on edge_runtime), as configured in pyproject.toml
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: install
	$(PY) benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache
