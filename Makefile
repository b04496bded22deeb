# seg4reg-tf: two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
SEG4REG := $(VENV)/bin/seg4reg
DEMO := demo_out
# `make demo IMAGE=xray.jpg` (JPEG, PNG or DICOM of a real AP spine X-ray) also measures it with the
# shipped reference model (serving/models/seg4reg).
IMAGE ?=
# The TFX pipeline's side environment (pipelines/): Python 3.10 + tfx 1.16, pinned in pipelines/requirements.txt.
TFX_VENV := .venv-tfx
PYTHON_TFX ?= $(firstword $(shell for p in python3.10 $$(pyenv root 2>/dev/null)/versions/3.10*/bin/python3.10; do \
	"$$p" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null && echo "$$p" && break; done))
# `make pipeline DATA=ROOT`: the demo config as a pipeline run into $(PIPELINE_OUT).
DATA ?=
PIPELINE_OUT ?= pipeline_out
# `make pipeline-image`: the container image of the compiled Vertex/Kubeflow spec (pipelines/Dockerfile); its
# name is seg4reg_pipeline.IMAGE, the default of `seg4reg-pipeline compile --image` (read from there: one place).
PIPELINE_IMAGE ?= $(shell sed -n 's/^IMAGE = "\(.*\)"$$/\1/p' pipelines/seg4reg_pipeline/__init__.py)

.PHONY: install test test-fast test-seeds lint demo clean pipeline-install pipeline pipeline-image

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

test: install pipeline-install lint
	$(PY) -m pytest -q tests

# ruff (ruff.toml: pycodestyle, pyflakes, import order), as keras-hub runs it
lint: install
	$(VENV)/bin/ruff check .

# The inner loop: everything but the tests marked `slow` (training beyond one step, servers, subprocess pipelines).
test-fast: install
	$(PY) -m pytest -q -m "not slow" tests

# The tests marked `numeric` under 10 seeds, oneDNN on and off (what another CPU kind's floats do to them);
# TESTS=path narrows it.
TESTS ?= tests
test-seeds: install
	bash scripts/test_seeds.sh $(PY) $(TESTS)

demo: install
	bash scripts/demo.sh $(SEG4REG) $(DEMO) "$(IMAGE)"

$(TFX_VENV)/.installed: pipelines/requirements.txt pipelines/pyproject.toml
	@test -n "$(PYTHON_TFX)" || { echo "pipeline-install: needs Python 3.10 (python3.10 on PATH or pyenv's 3.10.x); set PYTHON_TFX=/path/to/python3.10" >&2; exit 1; }
	rm -rf $(TFX_VENV)
	$(PYTHON_TFX) -m venv $(TFX_VENV)
	$(TFX_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TFX_VENV)/bin/python -m pip install --quiet -r pipelines/requirements.txt
	$(TFX_VENV)/bin/python -m pip install --quiet --no-deps -e . -e pipelines
	touch $@

pipeline-install: $(TFX_VENV)/.installed

pipeline: install pipeline-install
	@test -n "$(DATA)" || { echo "usage: make pipeline DATA=ROOT (an AASCE-format root or seg4reg data convert shards)" >&2; exit 2; }
	$(TFX_VENV)/bin/seg4reg-pipeline run --data "$(DATA)" --config pipelines/configs/demo.yaml \
		--pipeline-root $(PIPELINE_OUT)/root --serving-base $(PIPELINE_OUT)/serving/seg4reg --serve-command $(SEG4REG)

pipeline-image:
	docker build -f pipelines/Dockerfile -t $(PIPELINE_IMAGE) .

clean:
	rm -rf $(VENV) $(TFX_VENV) $(DEMO) $(PIPELINE_OUT) build *.egg-info
