# Two commands on a fresh machine: `make demo` and `make test`.
# Both create .venv with the machine's python3 (3.11) and install the project into it.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   ?= demo-data

.PHONY: demo test bench clean-demo

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH bash docs/demo.sh $(DEMO)

bench: $(STAMP)
	$(PY) bench/loader.py

clean-demo:
	rm -rf $(DEMO)
