# South-South Match — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
EVAL_SET ?=

.PHONY: install run test test-fast eval bench clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "ssmatch needs Python 3.11 or newer")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[embedded,test]'
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/python -m ssmatch.stack

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow and not e2e"

eval: install
	$(BIN)/python -m services.matcher.evaluate $(if $(EVAL_SET),--set $(EVAL_SET))
	$(BIN)/python -m services.catalog.search_eval $(if $(EVAL_SET),--set $(EVAL_SET))

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .data .pytest_cache
