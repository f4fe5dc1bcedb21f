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

# The main job on embedded default data: today, write a store of generated frames and flow,
# describe it and verify it. Later stages (synth -> ingest -> flow -> train -> evaluate) extend it.
demo: $(STAMP)
	$(PY) bench/loader.py --frames 2 --seconds 0.3 --workdir $(DEMO)/loader
	$(VENV)/bin/flowprep inspect $(DEMO)/loader/frames.zarr
	$(VENV)/bin/flowprep verify $(DEMO)/loader/frames.zarr

bench: $(STAMP)
	$(PY) bench/loader.py

clean-demo:
	rm -rf $(DEMO)
