# The two commands of the README: `make demo` and `make test`. Both create .venv if it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BROWSER_STAMP := $(VENV)/.installed-browser
HF_STAMP := $(VENV)/.installed-hf
# torch is pinned (also in pyproject.toml): an unpinned install can pull a multi-GB CUDA build.
TORCH := torch==2.13.0
DEMO := demo-output

.PHONY: demo test test-fast lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

# Playwright drives the system Chromium in tests/test_serve_browser.py; without either, those tests skip.
$(BROWSER_STAMP): pyproject.toml | $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,browser]" || echo "playwright not installed: browser tests will skip"
	touch $@

# transformers, tokenizers and gguf: tests/test_hf_*.py check exports and imports with them; without them those skip.
$(HF_STAMP): pyproject.toml | $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,hf]" "$(TORCH)" || echo "hf extra not installed: hf tests will skip"
	touch $@

# About a minute of training on the shipped tinyshakespeare (the shakespeare-cpu recipe), with the
# text before and after, the loss curve and the next things to try (minilab/app/demo.py). One thread:
# on a 2-core machine with anything else running, two threads made this small model's steps 30x slower
# (docs/benchmarks.md). MINILAB_NATIVE=0: its few hundred characters do not need the C++ decode step,
# whose first build would add half a minute; the first `generate` builds it (docs/precision.md).
demo: $(STAMP)
	MINILAB_NATIVE=0 $(BIN)/python -m minilab.app.demo --data example_data/tinyshakespeare.txt --out $(DEMO) --time_budget 60 --threads 1

test: $(STAMP) $(BROWSER_STAMP) $(HF_STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP) $(HF_STAMP)
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(DEMO) .pytest_cache .ruff_cache
