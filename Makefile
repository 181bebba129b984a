# The two commands of the README:
#   make book   set up .venv and build the executed book into _build/html
#   make test   set up .venv and run the whole test suite: lint, unit tests, every chapter,
#               the book build, and browser tests of the built site
# Both work on a fresh clone: `setup` creates the virtual environment when it is missing or
# when requirements.txt / pyproject.toml changed.

PYTHON ?= python3

# `make test` runs two notebook streams on two cores. Threads of GNU OpenMP (PyTorch's CPU
# threading) spin while they wait, which on an oversubscribed machine burns the other stream's
# core: a 2-thread MLP training loop took 81 s with spinning and 7 s with passive waiting, on
# this machine under load. Passive waiting changes no result, only how idle threads wait.
export OMP_WAIT_POLICY ?= PASSIVE
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup vendor browser book test test-unit test-site test-notebooks lint clean

# JavaScript the site serves itself (no CDN): the widget manager (with its fonts), MathJax and
# require.js, taken from their npm packages at the versions and checksums in site/vendor.sha256
# and copied into the site as _build/html/vendor/ (html_extra_path in _config.yml).
NPM_PACKAGES := @jupyter-widgets/html-manager@1.0.7 mathjax@3.2.2 requirejs@2.3.8
VENDOR       := _build/site-extra/vendor

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

vendor: $(VENDOR)/.done

$(VENDOR)/.done: site/vendor.sha256
	rm -rf _build/npm $(VENDOR) && mkdir -p _build/npm $(VENDOR)
	cd _build/npm && npm pack --silent $(NPM_PACKAGES) >/dev/null && sha256sum --quiet -c ../../site/vendor.sha256
	cd _build/npm && for t in *.tgz; do mkdir -p "$${t%.tgz}" && tar -xzf "$$t" -C "$${t%.tgz}"; done
	mkdir -p $(VENDOR)/html-manager $(VENDOR)/mathjax $(VENDOR)/requirejs
	cp -r _build/npm/jupyter-widgets-html-manager-1.0.7/package/dist/. $(VENDOR)/html-manager/
	rm -f $(VENDOR)/html-manager/*.map
	cp -r _build/npm/mathjax-3.2.2/package/es5/. $(VENDOR)/mathjax/
	cp _build/npm/requirejs-2.3.8/package/require.js $(VENDOR)/requirejs/
	touch $@

# -W: a warning (a broken cross-reference, a missing file) fails the build;
# a cell that raises stops it (_config.yml: allow_errors false).
# The HTML is rewritten from scratch each time (Sphinx does not refresh copied extra files);
# executed notebooks come from the cache, so this takes seconds.
# TUTORLIB_WIDGETS=static: widgets pre-render every setting, so they work on the static site
# (tutorlib/widgets.py); a reader's kernel draws on demand instead.
book: setup vendor
	$(BIN)/python tests/bookcache.py
	rm -rf _build/html
	TUTORLIB_WIDGETS=static $(BIN)/jupyter-book build . --builder html -W --keep-going

# Unit tests and every chapter (nbval; leaves the executed chapters in the build's cache),
# then the book (renders from that cache), then the browser tests of the built site.
#
# Two streams for the two cores: while nbval executes the chapters, the exported notebooks (the
# site's Colab/download files, written by the same export code) run in a Colab-like and a bare
# environment in the background (tests/site/test_export.py; log in _build/notebook-tests.log).
NOTEBOOKS := _build/notebooks

test: setup lint browser
	rm -rf $(NOTEBOOKS) && $(BIN)/python site/_ext/course_site.py $(NOTEBOOKS) \
	  $$($(BIN)/python -c 'import sys; sys.path.insert(0, "tests"); import bookcache; print(*bookcache.chapters())') >/dev/null
	@echo "Exported notebooks: running them in Colab-like and bare environments in the background"
	( COURSE_NOTEBOOKS=$(NOTEBOOKS) $(BIN)/python -m pytest tests/site/test_export.py -o addopts="" -ra \
	    -p no:cacheprovider --basetemp=_build/notebook-tests-tmp > _build/notebook-tests.log 2>&1; \
	  echo $$? > _build/notebook-tests.rc ) & \
	$(BIN)/python -m pytest --ignore=tests/site; status=$$?; \
	wait; echo "--- exported notebooks (_build/notebook-tests.log) ---"; cat _build/notebook-tests.log; \
	test $$status = 0 && test "$$(cat _build/notebook-tests.rc)" = 0
	$(MAKE) book
	$(BIN)/python -m pytest tests/site --ignore=tests/site/test_export.py

# The exported notebooks alone (after `make book`): Colab-like and bare environments.
test-notebooks: setup book
	$(BIN)/python -m pytest tests/site/test_export.py -o addopts="" -ra

test-site: setup browser
	$(BIN)/python -m pytest tests/site --ignore=tests/site/test_export.py

# Debian's Chromium for the browser tests (Playwright drives it; no browser is downloaded).
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "The browser tests need Debian's chromium: sudo apt-get install chromium" >&2; exit 1; fi; }

test-unit: setup
	$(BIN)/python -m pytest tests --ignore=tests/site

lint: setup
	$(BIN)/ruff check src tests site

clean:
	rm -rf _build
