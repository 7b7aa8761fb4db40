# The course in two commands:
#   make lab   - create .venv if needed, then start JupyterLab on notebooks/
#   make test  - create .venv if needed, then run the unit tests and every notebook
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: lab test readme browser unit notebooks reference clean-venv

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[lab,test]"
	$(PY) -m ipykernel install --sys-prefix --name pruning-course --display-name "Python (pruning course)"
	touch $(STAMP)

# JupyterLab refuses to start as root unless told; containers and CI machines often run as root
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/ $(ROOT_FLAG)

# the unit tests and the notebooks in one pytest session: conftest.py puts the notebooks first, longest first, and the
# unit test files after them, so the short unit files fill the time one worker would wait for the other's last notebook.
# Where Chromium is installed (the `browser` target installs it on a root Debian machine such as CI), the notebooks that
# show a widget run in JupyterLab in headless Chromium (tests/test_browser.py) instead of under nbval; elsewhere
# nbval runs every notebook and the browser tests are skipped.
test: readme browser
	PRUNING_STRICT_CHECKS=1 $(if $(wildcard $(CHROMIUM)),PRUNING_BROWSER=1) $(call pytest,--dist loadscope --no-loadscope-reorder) --nbval-lax --nbval-current-env --durations=0 tests notebooks/

# headless Chromium for tests/test_browser.py (Playwright drives it; it is in the test extras): Debian's package,
# installed when it is missing and this is a root Debian machine, as CI is; anywhere else a note says what is skipped
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }; }; } || \
	  echo "No Chromium at $(CHROMIUM): the browser tests are skipped and nbval runs every notebook."

# the README's key-numbers and baselines tables must match the committed results (before the notebooks rewrite them)
readme: $(STAMP)
	$(PY) -m pruning.report --check

# JOBS notebooks at a time (pytest-xdist; --dist loadscope keeps every cell of a notebook in one kernel, in order;
# conftest.py orders the notebooks longest first, by their reference runs' wall times, and --no-loadscope-reorder keeps that order),
# each kernel on one thread when JOBS > 1: on 2 cores, two one-thread kernels get more done than one kernel with
# two threads (the README's Development section has the measured times). `make notebooks JOBS=1` runs them one by
# one with torch's default threads, as a student's Jupyter does.
JOBS ?= 2
# $(call pytest,DIST): pytest on JOBS workers distributed by DIST, or plain pytest when JOBS = 1. The unit tests go a
# file per worker (--dist loadfile keeps a file's module-scoped fixtures in one process).
pytest = $(if $(filter-out 1,$(JOBS)),OMP_NUM_THREADS=1 $(PY) -m pytest -n $(JOBS) $(1),$(PY) -m pytest)

unit: $(STAMP)
	$(call pytest,--dist loadfile) tests

notebooks: $(STAMP)
	PRUNING_STRICT_CHECKS=1 $(call pytest,--dist loadscope --no-loadscope-reorder) --nbval-lax --nbval-current-env --durations=0 notebooks/

# reference runs (papermill, seeds 0 1 2, lab scale) that are missing, then the README's tables from them
reference: $(STAMP)
	$(PY) -m pruning.reproduce --scale lab --seeds 0 1 2
	$(PY) -m pruning.report --write

clean-venv:
	rm -rf $(VENV)
