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

export PYTHONHASHSEED := 0
unexport MPLBACKEND

.PHONY: venv book test unit goldens clean help

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

book: venv
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
	rm -rf _build book/executed
