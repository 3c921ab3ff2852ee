# The README's two commands. Each sets up .venv on first use (torch CPU 2.13.0, then zerohar with dev extras).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
LABELS ?=
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: test demo lint install

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

test: $(VENV)/.installed lint
	$(PY) -m pytest -q -p no:cacheprovider

demo: $(VENV)/.installed
	$(PY) scripts/demo.py $(if $(LABELS),--labels "$(LABELS)")
