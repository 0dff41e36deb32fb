# Two entry points for a fresh machine (see README): `make run` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
RAG    := $(VENV)/bin/rag
INDEX  ?= indexes/default
QUESTION ?= who wrote the theory of relativity

.PHONY: run setup index test test-all clean

# Set up, build the default index over the built-in Wikipedia corpus if missing (~4 min on 2 cores), answer a question.
run: setup index
	$(RAG) search "$(QUESTION)" --index $(INDEX) -k 5

setup: $(VENV)/.installed

# torch is pinned here, not in pyproject: 2.13.0 is the CPU build this machine installs from disk.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	touch $@

index: setup
	@test -f $(INDEX)/manifest.json || $(RAG) index build --corpus default --out $(INDEX)

test: setup
	$(PY) -m pytest -m "not slow" -q

test-all: setup
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) indexes/*/ eval/out tests/artifacts
