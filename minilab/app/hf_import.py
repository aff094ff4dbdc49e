"""``import --from DIR --out CKPT``: a Hugging Face GPT-2-family folder becomes a lab checkpoint.

GPT-2 is the lab's classic architecture with learned positions, so its weights only change names (and
are transposed: GPT-2's ``Conv1D`` stores (in, out), ``nn.Linear`` (out, in)). Its activation is GELU's
tanh approximation, the lab's ``mlp='gelu_tanh'``. Its tokenizer becomes the lab's byte-level BPE with
GPT-2's pattern, merges and ids (minilab/tokenizers/hf.py). Every tensor is checked against the config
before anything is written, and anything GPT-2 does that the lab cannot is refused, never approximated.
"""

from pathlib import Path

import torch

from minilab.checkpoint import save_checkpoint
from minilab.errors import LabError
from minilab.files import read_json
from minilab.model.config import ModelConfig
from minilab.model.gpt import GPT
from minilab.tokenizers.bpe import BPETokenizer
from minilab.tokenizers.hf import bpe_from_hf

ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}
NORM_EPS = 1e-5  # the lab's LayerNorm
# Buffers older GPT-2 files carry (the causal mask): the lab builds its own.
IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")


def gpt2_model_config(hf: dict) -> ModelConfig:
    """The lab's settings for a GPT-2 config.json; a setting the lab has no counterpart for is refused."""
    if hf.get("model_type") != "gpt2":
        raise LabError(
            f"config.json is a {hf.get('model_type')!r} model; import reads GPT-2-family folders (model_type 'gpt2')"
        )
    act = hf.get("activation_function", "gelu_new")
    checks = [
        (act in ACTIVATIONS, f"activation_function {act!r} (the lab has {', '.join(ACTIVATIONS)})"),
        (hf.get("layer_norm_epsilon", 1e-5) == NORM_EPS, f"layer_norm_epsilon {hf.get('layer_norm_epsilon')}"),
        (hf.get("scale_attn_weights", True), "scale_attn_weights false"),
        (not hf.get("scale_attn_by_inverse_layer_idx", False), "scale_attn_by_inverse_layer_idx"),
        (not hf.get("add_cross_attention", False), "add_cross_attention"),
    ]
    for ok, what in checks:
        if not ok:
            raise LabError(f"config.json sets {what}, which the lab's model has no exact counterpart for")
    try:
        d_model = hf.get("n_embd", 768)
        return ModelConfig(
            vocab_size=hf.get("vocab_size", 50257),
            context_length=hf.get("n_positions", 1024),
            d_model=d_model,
            n_heads=hf.get("n_head", 12),
            n_layers=hf.get("n_layer", 12),
            d_ff=hf.get("n_inner") or 4 * d_model,
            dropout=float(hf.get("resid_pdrop", 0.1)),
            pos_encoding="learned",
            norm="layernorm",
            mlp=ACTIVATIONS[act],
            tie_embeddings=bool(hf.get("tie_word_embeddings", True)),
            bias=True,
        )
    except (TypeError, ValueError) as e:
        raise LabError(f"config.json has an unusable value: {e}") from None


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor a GPT-2 file must hold (names without the 'transformer.' prefix), with its shape."""
    C, F = cfg.d_model, cfg.d_ff
    shapes = {"wte.weight": (cfg.vocab_size, C), "wpe.weight": (cfg.context_length, C)}
    for i in range(cfg.n_layers):
        h = f"h.{i}."
        shapes |= {h + "ln_1.weight": (C,), h + "ln_1.bias": (C,), h + "ln_2.weight": (C,), h + "ln_2.bias": (C,)}
        shapes |= {h + "attn.c_attn.weight": (C, 3 * C), h + "attn.c_attn.bias": (3 * C,)}
        shapes |= {h + "attn.c_proj.weight": (C, C), h + "attn.c_proj.bias": (C,)}
        shapes |= {h + "mlp.c_fc.weight": (C, F), h + "mlp.c_fc.bias": (F,)}
        shapes |= {h + "mlp.c_proj.weight": (F, C), h + "mlp.c_proj.bias": (C,)}
    shapes |= {"ln_f.weight": (C,), "ln_f.bias": (C,)}
    if not cfg.tie_embeddings:
        shapes["lm_head.weight"] = (cfg.vocab_size, C)
    return shapes


def read_gpt2_tensors(path: Path, cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """The tensors of model.safetensors by GPT-2's short names, each checked for presence and shape."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        raw = load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise LabError(f"{str(path)!r} is not a readable safetensors file ({e})") from None
    # GPT2LMHeadModel saves 'transformer.h.0...'; GPT2Model (OpenAI's GPT-2 files) saves 'h.0...'.
    tensors = {k.removeprefix("transformer."): v for k, v in raw.items()}
    shapes = expected_shapes(cfg)
    for name, shape in shapes.items():
        if name not in tensors:
            raise LabError(f"{str(path)!r} has no tensor {name!r} (config.json asks for {cfg.n_layers} layers)")
        if tuple(tensors[name].shape) != shape:
            raise LabError(
                f"tensor {name!r} in {str(path)!r} has shape {tuple(tensors[name].shape)}, config.json implies {shape}"
            )
    tied_head = "lm_head.weight" if cfg.tie_embeddings else None
    extra = [k for k in tensors if k not in shapes and k != tied_head and not k.endswith(IGNORED_SUFFIXES)]
    if extra:
        raise LabError(f"{str(path)!r} holds tensors a GPT-2 model does not have: {', '.join(sorted(extra)[:5])}")
    return {k: tensors[k].to(torch.float32) for k in shapes}


def lab_state(t: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """GPT-2's tensors under the lab's names (minilab/model/gpt.py), linear weights transposed to (out, in)."""
    sd = {"tok_emb.weight": t["wte.weight"], "pos_emb.weight": t["wpe.weight"]}
    for i in range(cfg.n_layers):
        h, p = f"h.{i}.", f"blocks.{i}."
        for hf, lab in (("ln_1", "ln1"), ("ln_2", "ln2")):
            sd[p + lab + ".weight"], sd[p + lab + ".bias"] = t[h + hf + ".weight"], t[h + hf + ".bias"]
        for hf, lab in (("attn.c_attn", "attn.qkv"), ("attn.c_proj", "attn.proj")):
            sd[p + lab + ".weight"], sd[p + lab + ".bias"] = t[h + hf + ".weight"].t(), t[h + hf + ".bias"]
        for hf, lab in (("mlp.c_fc", "mlp.fc"), ("mlp.c_proj", "mlp.proj")):
            sd[p + lab + ".weight"], sd[p + lab + ".bias"] = t[h + hf + ".weight"].t(), t[h + hf + ".bias"]
    sd["ln_f.weight"], sd["ln_f.bias"] = t["ln_f.weight"], t["ln_f.bias"]
    sd["lm_head.weight"] = t["wte.weight"] if cfg.tie_embeddings else t["lm_head.weight"]
    return {k: v.contiguous() for k, v in sd.items()}


def import_gpt2(folder: str | Path, out: str | Path) -> tuple[GPT, BPETokenizer]:
    """Check all of a GPT-2-family folder, then write the lab checkpoint ``out``; returns (model, tokenizer)."""
    d, out = Path(folder), Path(out)
    if not d.is_dir():
        raise LabError(f"--from {str(d)!r} is not a directory (a Hugging Face model folder)")
    if out.exists():
        raise LabError(f"--out {str(out)!r} already exists; choose another name")
    if not (d / "config.json").is_file():
        raise LabError(f"{str(d)!r} has no config.json")
    cfg = gpt2_model_config(read_json(d / "config.json"))
    if not (d / "model.safetensors").is_file():
        raise LabError(
            f"{str(d)!r} has no model.safetensors (the weights; pytorch_model.bin is not read: it is a pickle)"
        )
    tokenizer = bpe_from_hf(d)
    if tokenizer.vocab_size != cfg.vocab_size:
        raise LabError(f"the tokenizer has {tokenizer.vocab_size} tokens but config.json says {cfg.vocab_size}")
    model = GPT(cfg)
    model.load_state_dict(lab_state(read_gpt2_tensors(d / "model.safetensors", cfg), cfg))
    model.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "model_state": model.state_dict(),
        "model_config": cfg.to_dict(),
        "tokenizer": tokenizer.to_dict(),
        "imported_from": {"path": str(d.resolve()), "model_type": "gpt2"},
    }
    save_checkpoint(out, payload)
    return model, tokenizer
