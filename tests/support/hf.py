"""Helpers for the Hugging Face / GGUF tests: the architectures that export, tiny models with non-trivial weights."""

import torch

from minilab.model.gpt import GPT
from tests.conftest import EXAMPLE, tiny_model_config

TEXT = EXAMPLE.read_text(encoding="utf-8")
# Text the tokenizers must cut the same way on both sides: newlines, runs of spaces, tabs, contractions,
# digits, '_', fractions and superscripts (letters to Python, numbers to \p{N}), combining marks, the
# separators U+001C..U+001F (spaces to Python only), CJK, emoji, a non-breaking and a line separator.
VARIED = (
    "Hello, world! It's 2024... and we'll see.\n\n  Indented\tand\ttabbed\r\n"
    "snake_case __dunder__ x² ½ Ⅻ 3.14 1,000,000\n"
    "café cafe\u0301 naïve Ünïcödé ÆØÅ ß\x1c\x1d\x1e\x1f end\n"
    "日本語のテキスト 中文 한국어 नमस्ते مرحبا שלום 🤖🎉👍🏽 \u00a0nbsp\u2028ls   trailing   \n\n\n"
)

# name -> switches; every one exports to Hugging Face transformers (the family in the comment).
EXPORTABLE = {
    "classic": {},  # gpt2: sinusoidal positions, sqrt(d) scale folded in, head untied
    "learned": {"pos_encoding": "learned"},  # gpt2, head stays tied
    "none-nobias-untied": {"pos_encoding": "none", "bias": False, "tie_embeddings": False},  # gpt2
    "llama": {"pos_encoding": "rope", "norm": "rmsnorm", "mlp": "swiglu", "bias": False},
    "llama-bias-untied": {"pos_encoding": "rope", "norm": "rmsnorm", "mlp": "swiglu", "tie_embeddings": False},
    "qwen3": {"pos_encoding": "rope", "norm": "rmsnorm", "mlp": "swiglu", "bias": False, "qk_norm": True},
}


def jittered_model(vocab_size: int, seed: int = 0, **switches) -> GPT:
    """A tiny model whose every weight (norm gains and biases too) is moved off its initial value."""
    torch.manual_seed(seed)
    cfg = tiny_model_config(vocab_size=vocab_size, context_length=96, **switches)
    model = GPT(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return model


def lab_greedy(model: GPT, ids: list[int], n: int) -> list[int]:
    """n greedy tokens after ``ids``, each from a full forward pass (no cache: the plain reference)."""
    idx = torch.tensor([ids])
    with torch.no_grad():
        for _ in range(n):
            nxt = model(idx)[0][:, -1].argmax(-1, keepdim=True)  # (1, 1)
            idx = torch.cat([idx, nxt], dim=1)
    return idx[0, len(ids) :].tolist()
