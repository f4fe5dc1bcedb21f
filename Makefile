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

# The main job on embedded default data. Today: generate the synthetic replicas of the four raw
# layouts (with exact flow), save a preview picture of each, then write a store of frames and flow,
# describe it and verify it. Later stages (ingest -> flow -> train -> evaluate) extend it.
demo: $(STAMP)
	$(VENV)/bin/flowprep synth --out $(DEMO)/raw --scale demo --seed 0
	$(VENV)/bin/flowprep synth-preview $(DEMO)/raw --out $(DEMO)/preview
	$(PY) bench/loader.py --frames 2 --seconds 0.3 --workdir $(DEMO)/loader
	$(VENV)/bin/flowprep inspect $(DEMO)/loader/frames.zarr
	$(VENV)/bin/flowprep verify $(DEMO)/loader/frames.zarr

bench: $(STAMP)
	$(PY) bench/loader.py
	$(PY) bench/domain_gap.py --raw $(DEMO)/raw

clean-demo:
	rm -rf $(DEMO)
