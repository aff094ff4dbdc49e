"""``export --format gguf``: one .gguf file that llama.cpp (and Ollama, LM Studio, ...) runs, written with ``gguf``.

The tensors start from the Hugging Face export's (minilab/app/hf_export.py) and take llama.cpp's names
from gguf's own name map, as llama.cpp's converter does. Two layouts differ:

- llama.cpp's ``llama`` rotates adjacent channels (2i, 2i+1) of each head, the lab (like transformers)
  rotates channel i against i + head_dim/2. Permuting the rows of the q and k projections (the same
  permutation on both, so every score q.k is unchanged) makes one the other. Its ``qwen3`` rotates
  halves, as the lab does: no permutation.
- GPT-2's ``Conv1D`` matrices go back to (out, in).

The vocabulary is written as GPT-2-style byte-level BPE (``tokenizer.ggml.model = gpt2``): a lab BPE with
its merges; a character vocabulary as one token per character, built from its UTF-8 bytes by merges.
"""

import os
from pathlib import Path

import numpy as np
import torch

from minilab.app.hf_export import NORM_EPS, ROPE_THETA, gpt2_tensors, llama_tensors
from minilab.app.hf_families import GGUF_FAMILIES, choose_family
from minilab.errors import LabError
from minilab.model.gpt import GPT
from minilab.model.layers import swiglu_hidden
from minilab.tokenizers.bpe import N_BYTES, BPETokenizer
from minilab.tokenizers.char import CharTokenizer, Tokenizer
from minilab.tokenizers.hf import bytes_to_unicode

FAMILIES = ("llama", "qwen3", "gpt2")
CONV1D = (".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight")


def interleave_halves(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Reorder each head's rows from (first half, second half) to pairs (0, hs/2), (1, hs/2 + 1), ...

    The same permutation llama.cpp's converter applies to Hugging Face Llama checkpoints.
    """
    shape = w.shape
    return w.reshape(n_heads, 2, shape[0] // n_heads // 2, *shape[1:]).transpose(1, 2).reshape(shape)


def gguf_tensors(model: GPT, family: str) -> dict[str, np.ndarray]:
    """llama.cpp's tensor names for the model's weights, as float32 arrays."""
    import gguf

    cfg = model.cfg
    hf, _ = gpt2_tensors(model) if family == "gpt2" else llama_tensors(model)
    arch = {"llama": gguf.MODEL_ARCH.LLAMA, "qwen3": gguf.MODEL_ARCH.QWEN3, "gpt2": gguf.MODEL_ARCH.GPT2}[family]
    names = gguf.get_tensor_name_map(arch, cfg.n_layers)
    out = {}
    for name, t in hf.items():
        if family == "gpt2" and name.endswith(CONV1D):
            t = t.t()  # back to (out, in)
        if family == "llama" and (".q_proj." in name or ".k_proj." in name):
            t = interleave_halves(t, cfg.n_heads)
        new = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise LabError(f"gguf has no name for {name!r} in {family}")  # a bug, not bad input: say which
        out[new] = t.detach().to("cpu", torch.float32).contiguous().numpy()
    return out


def vocabulary(tokenizer: Tokenizer) -> tuple[list[str], list[int], list[str]]:
    """(tokens by model id, their gguf token types, merges 'a b' by rank) in GPT-2's byte-level spelling."""
    show = bytes_to_unicode()
    spell = lambda data: "".join(show[b] for b in data)  # noqa: E731
    if isinstance(tokenizer, CharTokenizer):
        tokens = [spell(c.encode("utf-8")) for c in tokenizer.chars]
        merges: dict[str, None] = {}  # a character of several bytes is put together byte by byte
        for c in tokenizer.chars:
            data = c.encode("utf-8")
            for k in range(1, len(data)):
                merges[f"{spell(data[:k])} {spell(data[k : k + 1])}"] = None
        return tokens, [1] * len(tokens), list(merges)
    if not isinstance(tokenizer, BPETokenizer):
        raise LabError(f"cannot write a {type(tokenizer).__name__} into gguf")
    n_plain = N_BYTES + len(tokenizer.merges)
    tokens, types = [""] * tokenizer.vocab_size, [1] * tokenizer.vocab_size
    for i, data in enumerate(tokenizer.token_bytes):
        m = tokenizer.model_id(i)
        tokens[m] = spell(data) if i < n_plain else tokenizer.specials[i - n_plain]
        types[m] = 1 if i < n_plain else 3  # NORMAL, or CONTROL for a special token
    if len(set(tokens)) < len(tokens):  # llama.cpp finds a token by its spelling: two ids cannot share one
        raise LabError("two BPE tokens spell the same bytes; a GGUF vocabulary cannot hold both")
    merges = [f"{spell(tokenizer.token_bytes[a])} {spell(tokenizer.token_bytes[b])}" for a, b in tokenizer.merges]
    return tokens, types, merges


def export_gguf(model: GPT, tokenizer: Tokenizer, out_file: str | Path, dtype: str = "float32") -> Path:
    """Write ``out_file``; refuses (before writing anything) a model llama.cpp would compute differently."""
    cfg = model.cfg
    note = "; llama.cpp's gpt2 uses GELU's tanh approximation, which only an imported GPT-2 has"
    family = choose_family(cfg, FAMILIES, "GGUF (llama.cpp)", GGUF_FAMILIES, note if cfg.mlp == "gelu" else "")
    out = Path(out_file)
    if out.exists():
        raise LabError(f"--out {str(out)!r} already exists; choose another name")
    if not out.parent.is_dir():
        raise LabError(f"--out {str(out)!r}: the folder {str(out.parent)!r} does not exist")
    try:
        import gguf
    except ImportError:
        raise LabError("--format gguf needs the gguf package: pip install -e '.[hf]'") from None
    tensors = gguf_tensors(model, family)
    tokens, types, merges = vocabulary(tokenizer)
    tmp = out.with_name(f".{out.name}.tmp")
    w = gguf.GGUFWriter(tmp, family)
    try:
        w.add_name(f"mini-transformer-lab {family}")
        w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if dtype == "float16" else gguf.LlamaFileType.ALL_F32)
        w.add_context_length(cfg.context_length)
        w.add_embedding_length(cfg.d_model)
        w.add_block_count(cfg.n_layers)
        w.add_head_count(cfg.n_heads)
        w.add_vocab_size(cfg.vocab_size)
        if family == "gpt2":
            w.add_feed_forward_length(cfg.d_ff)
            w.add_layer_norm_eps(NORM_EPS)
        else:
            w.add_feed_forward_length(swiglu_hidden(cfg.d_ff))
            w.add_head_count_kv(cfg.n_heads)
            w.add_key_length(cfg.head_dim)
            w.add_value_length(cfg.head_dim)
            w.add_rope_dimension_count(cfg.head_dim)
            w.add_rope_freq_base(ROPE_THETA)
            w.add_layer_norm_rms_eps(NORM_EPS)
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("gpt-2")
        w.add_token_list(tokens)
        w.add_token_types(types)
        w.add_token_merges(merges)
        w.add_add_bos_token(False)  # the lab's models never saw a begin-of-text token
        for name, data in tensors.items():
            # f16 for the matrices only: norms and biases stay f32, as llama.cpp's converter does.
            w.add_tensor(name, data.astype(np.float16) if dtype == "float16" and data.ndim > 1 else data)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
