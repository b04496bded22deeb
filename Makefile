# seg4reg-tf: two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
SEG4REG := $(VENV)/bin/seg4reg
DEMO := demo_out
# `make demo IMAGE=xray.jpg` (JPEG, PNG or DICOM of a real AP spine X-ray) also measures it with the
# shipped reference model (serving/models/seg4reg).
IMAGE ?=
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install test demo clean

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q tests

demo: install
	bash scripts/demo.sh $(SEG4REG) $(DEMO) "$(IMAGE)"

clean:
	rm -rf $(VENV) $(DEMO) build *.egg-info
