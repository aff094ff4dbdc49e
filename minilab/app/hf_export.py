"""``export --format hf``: a folder that Hugging Face transformers loads as GPT-2, Llama or Qwen3, no custom code.

Everything is written as plain files (safetensors and JSON): transformers is needed to *use* the folder,
not to write it. The weights are renamed, and reshaped where the two sides store them differently:

- GPT-2 keeps its linear layers as ``Conv1D`` with the matrix transposed (in, out); the lab's sinusoidal
  table becomes GPT-2's ``wpe`` (a table that was never trained is still a table), and the lab's
  ``sqrt(d_model)`` scale of the token embeddings is multiplied into ``wte``. The output head then needs
  the unscaled matrix, so a tied model is exported with an untied head (``tie_word_embeddings: false``).
- Llama and Qwen3 split the lab's fused ``qkv`` and SwiGLU ``fc`` into separate matrices. The lab
  rotates the first half of each head against the second, as transformers' ``rotate_half`` does, so
  q and k need no permutation here (llama.cpp pairs channels differently: see gguf_export.py).
"""

from pathlib import Path

import torch

from minilab.app.hf_families import choose_family
from minilab.errors import LabError
from minilab.files import atomic_write, json_bytes
from minilab.model.config import ModelConfig
from minilab.model.gpt import GPT
from minilab.model.layers import swiglu_hidden
from minilab.model.positions import sinusoidal_table
from minilab.tokenizers.char import Tokenizer
from minilab.tokenizers.hf import to_tokenizer_json

FAMILIES = ("gpt2", "llama", "qwen3")
ARCHITECTURES = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM", "qwen3": "Qwen3ForCausalLM"}
NORM_EPS = 1e-5  # nn.LayerNorm's and the lab's RMSNorm's default
ROPE_THETA = 10000.0  # minilab/model/positions.py: Rotary's base
FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def gpt2_tensors(model: GPT) -> tuple[dict[str, torch.Tensor], bool]:
    """GPT-2's names for the lab's weights, and whether the head stays tied to the embedding."""
    cfg, sd = model.cfg, model.state_dict()
    scale = model.emb_scale if cfg.pos_encoding == "sinusoidal" else 1.0
    if cfg.pos_encoding == "learned":
        wpe = sd["pos_emb.weight"]
    elif cfg.pos_encoding == "sinusoidal":
        wpe = sinusoidal_table(cfg.context_length, cfg.d_model)
    else:  # 'none': no position signal is a table of zeros
        wpe = torch.zeros(cfg.context_length, cfg.d_model)
    out = {"transformer.wte.weight": sd["tok_emb.weight"] * scale, "transformer.wpe.weight": wpe}

    def bias(name: str, size: int) -> torch.Tensor:  # GPT-2 always has biases: a lab model without has zeros
        return sd[name] if name in sd else torch.zeros(size)

    C = cfg.d_model
    for i in range(cfg.n_layers):
        p, h = f"blocks.{i}.", f"transformer.h.{i}."
        for lab, hf in (("ln1", "ln_1"), ("ln2", "ln_2")):
            out[h + hf + ".weight"] = sd[p + lab + ".weight"]
            out[h + hf + ".bias"] = bias(p + lab + ".bias", C)
        # Conv1D stores (in, out): the transpose of nn.Linear's (out, in).
        for lab, hf in (("attn.qkv", "attn.c_attn"), ("attn.proj", "attn.c_proj"), ("mlp.fc", "mlp.c_fc")):
            out[h + hf + ".weight"] = sd[p + lab + ".weight"].t()
            out[h + hf + ".bias"] = bias(p + lab + ".bias", sd[p + lab + ".weight"].size(0))
        out[h + "mlp.c_proj.weight"] = sd[p + "mlp.proj.weight"].t()
        out[h + "mlp.c_proj.bias"] = bias(p + "mlp.proj.bias", C)
    out["transformer.ln_f.weight"] = sd["ln_f.weight"]
    out["transformer.ln_f.bias"] = bias("ln_f.bias", C)
    tied = cfg.tie_embeddings and scale == 1.0
    if not tied:  # a scaled wte no longer equals the head: store the head's own matrix
        out["lm_head.weight"] = sd["lm_head.weight"]
    return out, tied


def llama_tensors(model: GPT) -> tuple[dict[str, torch.Tensor], bool]:
    """Llama's (and Qwen3's) names for the lab's weights, and whether the head is tied."""
    cfg, sd = model.cfg, model.state_dict()
    out = {"model.embed_tokens.weight": sd["tok_emb.weight"], "model.norm.weight": sd["ln_f.weight"]}
    C, hidden = cfg.d_model, swiglu_hidden(cfg.d_ff)
    for i in range(cfg.n_layers):
        p, h = f"blocks.{i}.", f"model.layers.{i}."
        out[h + "input_layernorm.weight"] = sd[p + "ln1.weight"]
        out[h + "post_attention_layernorm.weight"] = sd[p + "ln2.weight"]
        pieces = {  # hf name -> (lab name, rows of it)
            "self_attn.q_proj": ("attn.qkv", slice(0, C)),
            "self_attn.k_proj": ("attn.qkv", slice(C, 2 * C)),
            "self_attn.v_proj": ("attn.qkv", slice(2 * C, 3 * C)),
            "self_attn.o_proj": ("attn.proj", slice(None)),
            "mlp.gate_proj": ("mlp.fc", slice(0, hidden)),  # the lab's fc is [gate; up]: silu(gate) * up
            "mlp.up_proj": ("mlp.fc", slice(hidden, 2 * hidden)),
            "mlp.down_proj": ("mlp.proj", slice(None)),
        }
        for hf, (lab, rows) in pieces.items():
            out[h + hf + ".weight"] = sd[p + lab + ".weight"][rows]
            if cfg.bias:
                out[h + hf + ".bias"] = sd[p + lab + ".bias"][rows]
        if cfg.qk_norm:
            out[h + "self_attn.q_norm.weight"] = sd[p + "attn.q_norm.weight"]
            out[h + "self_attn.k_norm.weight"] = sd[p + "attn.k_norm.weight"]
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = sd["lm_head.weight"]
    return out, cfg.tie_embeddings


def hf_config(cfg: ModelConfig, family: str, tied: bool) -> dict:
    """config.json: the family's settings that reproduce the lab's model."""
    common = {
        "architectures": [ARCHITECTURES[family]],
        "model_type": family,
        "vocab_size": cfg.vocab_size,
        "tie_word_embeddings": tied,
        "bos_token_id": None,  # the lab's vocabularies have no begin/end-of-text tokens
        "eos_token_id": None,
        "pad_token_id": None,
        "dtype": "float32",
        "torch_dtype": "float32",  # the name transformers before 4.56 reads
        "use_cache": True,
    }
    if family == "gpt2":
        return common | {
            "n_positions": cfg.context_length,
            "n_embd": cfg.d_model,
            "n_layer": cfg.n_layers,
            "n_head": cfg.n_heads,
            "n_inner": cfg.d_ff,
            # gelu_pytorch_tanh is torch's tanh approximation, the very function of the lab's 'gelu_tanh'.
            "activation_function": "gelu" if cfg.mlp == "gelu" else "gelu_pytorch_tanh",
            "layer_norm_epsilon": NORM_EPS,
            "resid_pdrop": cfg.dropout,
            "embd_pdrop": cfg.dropout,
            "attn_pdrop": 0.0,  # the lab has no dropout on attention weights
            "scale_attn_weights": True,
        }
    rope = {"rope_type": "default", "rope_theta": ROPE_THETA}
    out = common | {
        "hidden_size": cfg.d_model,
        "intermediate_size": swiglu_hidden(cfg.d_ff),
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.context_length,
        "rms_norm_eps": NORM_EPS,
        "rope_parameters": rope,
        "rope_theta": ROPE_THETA,  # the name transformers 4.x reads
        "attention_bias": cfg.bias,
        "attention_dropout": 0.0,
    }
    if family == "llama":
        out["mlp_bias"] = cfg.bias
    else:
        out |= {"use_sliding_window": False, "max_window_layers": cfg.n_layers}
    return out


def export_hf(model: GPT, tokenizer: Tokenizer, out_dir: str | Path) -> list[Path]:
    """Write the folder; refuses (before writing anything) a model no family computes exactly."""
    from safetensors.torch import save

    family = choose_family(model.cfg, FAMILIES, "Hugging Face transformers")
    doc = to_tokenizer_json(tokenizer)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise LabError(f"--out {str(out)!r} is a file, not a directory")
    taken = [name for name in FILES if (out / name).exists()]
    if taken:
        raise LabError(f"{str(out)!r} already holds {', '.join(taken)}; choose another --out")
    tensors, tied = gpt2_tensors(model) if family == "gpt2" else llama_tensors(model)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in tensors.items()}
    tok_config = {
        # The generic class: it runs tokenizer.json exactly as written (a family's own class may rebuild it).
        "tokenizer_class": "PreTrainedTokenizerFast",
        "clean_up_tokenization_spaces": False,
        "model_max_length": model.cfg.context_length,
    }
    files = {
        "config.json": json_bytes(hf_config(model.cfg, family, tied)),
        "model.safetensors": save(tensors, metadata={"format": "pt"}),
        "tokenizer.json": json_bytes(doc),
        "tokenizer_config.json": json_bytes(tok_config),
    }
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        atomic_write(out / name, lambda f, data=data: f.write(data))
    return [out / name for name in files]
