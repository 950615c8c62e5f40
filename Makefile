# The same commands the README gives, as targets.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo test lint bench prove mutate clean

$(VENV):
	python3 -m venv $(VENV)

install: $(VENV)
	$(VENV)/bin/pip install .

demo: install
	$(VENV)/bin/syncd demo

test: $(VENV)
	$(VENV)/bin/pip install -e '.[test]' && $(VENV)/bin/pytest

lint: $(VENV)
	$(VENV)/bin/ruff check daemon plugins tests bench
	$(VENV)/bin/mypy

bench: $(VENV)
	$(VENV)/bin/pip install -e '.[test,bench]'
	@# As modules (python -m bench.NAME): run as files, bench/queue.py would shadow the
	@# standard library's queue module for the other scripts.
	@# bench/prove.py is not a speed benchmark: `make prove` runs it.
	@for b in bench/*.py; do n=$$(basename $$b .py); [ "$$n" = prove ] && continue; \
		echo "== $$n"; $(PY) -m bench.$$n --quick || exit 1; done

# Every fault scenario at full size, with its scoreboard (docs/prove.md); QUICK=1 for CI sizes.
prove: $(VENV)
	$(VENV)/bin/pip install -e '.[test]'
	$(PY) -m bench.prove $(if $(QUICK),--quick)

# Mutation testing of the core (docs/testing.md): minutes, so not part of `make test` or CI.
mutate: $(VENV)
	$(VENV)/bin/pip install -e '.[test]' && $(PY) tools/mutate.py

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .hypothesis
