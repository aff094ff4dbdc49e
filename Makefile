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

# Train a small model (0.8M parameters) on the bundled text for about a minute, then generate from it.
demo: $(STAMP)
	$(BIN)/mini-transformer-lab train --data example_data/ai_intro.txt --epochs 10 \
	    --d_model 128 --n_heads 4 --n_layers 4 --d_ff 512 --lr 0.004 --dropout 0 \
	    --out_dir $(DEMO)/checkpoints --experiments_dir $(DEMO)/experiments --run_name demo-$$(date +%Y%m%d-%H%M%S)
	$(BIN)/mini-transformer-lab generate --checkpoint $(DEMO)/checkpoints/checkpoint.pt \
	    --prompt "Training even a mini transformer" --temperature 0.5 --max_new_tokens 300 --seed 7

test: $(STAMP) $(BROWSER_STAMP) $(HF_STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP) $(HF_STAMP)
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(DEMO) .pytest_cache .ruff_cache
