# Two commands set everything up on a fresh machine:
#   make demo   - create the venv, install, and run synth -> train -> bench -> export -> predict
#   make test   - create the venv, install with test tools, run ruff, the import contracts and the tests
#   make models - rebuild the models bundled with the package (spinescan/pretrained/, docs/pretrained.md)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# The browser page's one dependency (onnxruntime-web), pinned by web/package-lock.json.
NPM_STAMP := web/node_modules/.package-lock.json

.PHONY: demo test lint docs install clean models

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[train,dicom,dev,notebook]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

$(NPM_STAMP): web/package-lock.json
	bash scripts/install-system-deps.sh
	@command -v npm >/dev/null || { echo "npm is needed for the browser page (apt-get install -y npm)"; exit 1; }
	cd web && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $(NPM_STAMP)

install: $(STAMP) $(NPM_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check spinescan plugins tests benchmarks
	$(BIN)/lint-imports

# The documentation site (mkdocs.yml), strict: a broken link, anchor or missing page fails the build.
# Offline; the command reference is generated from the click commands (built-in models only).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 SPINESCAN_DISABLE_PLUGIN_AUTOLOAD=1 $(BIN)/mkdocs build --strict --quiet -d site

test: install lint docs
	bash scripts/install-system-deps.sh
	$(BIN)/python -m pytest tests

demo: install
	PATH=$(abspath $(BIN)):$$PATH bash scripts/demo.sh

# One recorded recipe per bundled model (scripts/build_models.sh); MODELS="scoliosis" rebuilds one.
models: $(STAMP)
	nice -n 10 bash scripts/build_models.sh $(MODELS)

clean:
	rm -rf $(VENV) runs reports build site *.egg-info web/node_modules
