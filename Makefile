# ltxflow: `make demo` runs the main job on the demo project; `make test` runs the whole suite.
# Both create .venv with the Python 3.11+ they find and install what they need into it.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TESTS  := $(VENV)/.installed-test
DEMO   := projects/demo/demo.yaml
# Every install is held to the versions in constraints.txt (`make lock` refreshes it), so a fresh
# machine gets the working set the tests passed with, not whatever was released since.
PIP    := $(BIN)/python -m pip install --quiet -c constraints.txt

.PHONY: demo test bench install schema clean chromium lock

# What the demo needs: ltxflow and its own dependencies, nothing for tests or GPUs.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "ltxflow needs Python >= 3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade 'pip>=24'
	$(PIP) -e .
	touch $(STAMP)

install: $(STAMP)

# The test tools and backend local's pipelines (torch with torchaudio, ltx-pipelines; about 6 GB):
# for `make test` and `make bench` only, not the demo.
$(TESTS): $(STAMP)
	$(PIP) -e '.[test,local]'
	touch $(TESTS)

demo: $(STAMP)
	$(BIN)/ltxflow plan $(DEMO)
	$(BIN)/ltxflow build $(DEMO)
	@echo "the demo video: projects/demo/out/neon-nights.mp4"

# The layer contracts (import-linter; see [tool.importlinter] in pyproject.toml), then the tests.
test: $(TESTS) chromium
	$(BIN)/lint-imports
	$(BIN)/actionlint examples/github/*.yml $(wildcard .github/workflows/*.yml .github/workflows/*.yaml)
	LTXFLOW_REQUIRE_LOCAL=1 $(BIN)/python -m pytest

# Refresh constraints.txt after a change to the dependencies in pyproject.toml: resolves them
# anew in a scratch venv (Python 3.11, this platform) and writes down every version it got.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade 'pip>=24'
	.lock-venv/bin/python -m pip install --quiet '.[test,local]'
	{ sed -n '1,/^[^#]/{/^#/p}' constraints.txt; \
	  .lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^ltxflow[= @]'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .lock-venv

# The report's browser test drives a system Chromium through Playwright (which downloads no browser):
# LTXFLOW_CHROMIUM, else chromium, chromium-browser or google-chrome on PATH. When none is there and
# this runs as root with apt-get, Debian's chromium package is installed. For `make test` only.
chromium:
	@if [ -n "$$LTXFLOW_CHROMIUM" ]; then \
	    echo "chromium: LTXFLOW_CHROMIUM=$$LTXFLOW_CHROMIUM"; \
	elif found=$$(command -v chromium || command -v chromium-browser || command -v google-chrome); then \
	    echo "chromium: $$found"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "chromium: none on PATH; installing Debian's chromium package: apt-get install -y chromium"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium || { \
	        echo "chromium: the install failed; apt-get update, then installing again"; \
	        apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }; \
	else \
	    echo "chromium: none found, and installing one needs root and apt-get; the browser test skips" \
	         "(or fails under LTXFLOW_REQUIRE_BROWSER=1)"; \
	fi

# Regenerate schemas/project.schema.json after changing the project models.
schema: $(STAMP)
	$(BIN)/ltxflow schema > schemas/project.schema.json

clean:
	rm -rf $(VENV) .lock-venv .pytest_cache .hypothesis build *.egg-info

# The benchmark (bench/run.py): writes bench/RESULTS.md; not part of `make test`. MoviePy is
# installed here only, as the baseline the stitch is compared with.
# bench/firsthour.py adds section 7 (a real song's first hour), side by side with BENCH_BASELINE:
# the last commit before that work.
BENCH_BASELINE ?= 2db53ea
bench: $(TESTS)
	$(BIN)/python -m pip install --quiet 'moviepy>=2,<3'
	$(BIN)/python bench/run.py
	$(BIN)/python bench/firsthour.py --baseline $(BENCH_BASELINE)
	$(BIN)/python bench/ray_scheduler.py
