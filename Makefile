# mmdg task runner. The two commands: `make book` and `make test`.
# Each creates (or reuses) the virtual environment $(VENV), re-installing when
# requirements.txt, pyproject.toml or the checkout path change.
PYTHON  ?= python3
VENV    ?= .venv
PROFILE ?= book
BIN     := $(VENV)/bin
KEY     := $(shell cat requirements.txt pyproject.toml | sha256sum | cut -c1-12)-$(shell echo $(CURDIR) | sha256sum | cut -c1-6)
STAMP   := $(VENV)/.installed-$(KEY)
PYTEST_NB := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg
# MathJax for offline reading (pinned; sha256 of the npm tarball). `make book` unpacks it into $(MATHJAX_DIR), which
# sphinx copies into the HTML (html_extra_path in _config.yml; not _static/, where jupyter-book would load every .js)
MATHJAX        := 3.2.2
MATHJAX_SHA256 := 1b9c0a1c44df864e915690558e72adb9cc5203360daefd385084ced3b6c64c09
MATHJAX_DIR    := .cache/book-extra/_static/mathjax
MATHJAX_STAMP  := $(MATHJAX_DIR)/.installed-$(MATHJAX)

export PYTHONHASHSEED := 0
unexport MPLBACKEND

.PHONY: venv mathjax book test unit goldens clean help

help:
	@echo "make book     execute every notebook in _toc.yml (PROFILE=$(PROFILE)) and build the HTML book"
	@echo "make test     unit tests + nbval regression checks of the executed smoke notebooks"
	@echo "make goldens  regenerate tests/golden/*.ipynb and their run records tests/golden/records/ (smoke profile)"

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

venv: $(STAMP)

mathjax: $(MATHJAX_STAMP)

$(MATHJAX_STAMP):
	@command -v npm >/dev/null || { echo "error: npm (Node.js) is needed once, to fetch MathJax $(MATHJAX) so the book shows math offline; install Node.js (e.g. apt-get install npm) and run make book again" >&2; exit 1; }
	mkdir -p .cache
	cd .cache && npm pack --silent mathjax@$(MATHJAX) >/dev/null
	echo "$(MATHJAX_SHA256)  .cache/mathjax-$(MATHJAX).tgz" | sha256sum -c --quiet -
	rm -rf $(MATHJAX_DIR) && mkdir -p $(MATHJAX_DIR)
	tar -xzf .cache/mathjax-$(MATHJAX).tgz -C $(MATHJAX_DIR) --strip-components=2 package/es5
	touch $(MATHJAX_STAMP)

book: venv mathjax
	$(BIN)/python scripts/run_notebooks.py --profile $(PROFILE) --out book/executed
	$(BIN)/jupyter-book build . -W -n --keep-going
	@echo "HTML book: $(CURDIR)/_build/html/index.html"

test: venv
	$(BIN)/python -m pytest tests $(PYTEST_NB) -q

unit: venv
	$(BIN)/python -m pytest tests -q

goldens: venv
	$(BIN)/python scripts/run_notebooks.py --profile smoke --golden --out tests/golden

clean:
	rm -rf _build book/executed .cache/book-extra
