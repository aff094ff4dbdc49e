"""Sharing a model: weights as .safetensors plus config and tokenizer as JSON, in one directory.

``export_model`` writes model.safetensors, config.json and tokenizer.json; ``load_export`` reads
them back. safetensors holds raw tensors only, so loading a shared model can never run code.
"""

import json
from pathlib import Path

from minilab.checkpoint import atomic_write
from minilab.config import ModelConfig
from minilab.errors import LabError
from minilab.model import GPT
from minilab.tokenizer import tokenizer_from_dict

WEIGHTS, CONFIG, TOKENIZER = "model.safetensors", "config.json", "tokenizer.json"
TIED = "lm_head.weight"  # with tie_embeddings, the same matrix as tok_emb.weight: stored once


def is_export_dir(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / WEIGHTS).exists()


def export_model(model: GPT, tokenizer, out_dir: str | Path) -> list[Path]:
    """Write the three files into ``out_dir``; refuses to overwrite an earlier export."""
    from safetensors.torch import save

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise LabError(f"--out {str(out)!r} is a file, not a directory")
    taken = [name for name in (WEIGHTS, CONFIG, TOKENIZER) if (out / name).exists()]
    if taken:
        raise LabError(f"{str(out)!r} already holds {', '.join(taken)}; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    tied = model.cfg.tie_embeddings
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if not (tied and k == TIED)}
    blob = save(tensors, metadata={"format": "minilab", "format_version": "1"})
    files = {WEIGHTS: blob, CONFIG: _json(model.cfg.to_dict()), TOKENIZER: _json(tokenizer.to_dict())}
    for name, data in files.items():
        atomic_write(out / name, lambda f, data=data: f.write(data))
    return [out / name for name in files]


def load_export(path: str | Path, device="cpu"):
    """Rebuild (model, tokenizer) from an export directory; the model is in eval mode."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    d = Path(path)
    for name in (WEIGHTS, CONFIG, TOKENIZER):
        if not (d / name).is_file():
            raise LabError(f"export directory {str(d)!r} has no {name}")
    cfg = ModelConfig.from_dict(_read_json(d / CONFIG))
    tokenizer = tokenizer_from_dict(_read_json(d / TOKENIZER))
    if tokenizer.vocab_size != cfg.vocab_size:
        raise LabError(f"{TOKENIZER} has {tokenizer.vocab_size} tokens but {CONFIG} says {cfg.vocab_size}")
    try:
        tensors = load_file(d / WEIGHTS)
    except (SafetensorError, OSError, ValueError) as e:
        raise LabError(f"{str(d / WEIGHTS)!r} is not a readable safetensors file ({e})") from None
    model = GPT(cfg)
    if cfg.tie_embeddings and "tok_emb.weight" in tensors:
        tensors[TIED] = tensors["tok_emb.weight"]
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        raise LabError(f"the weights in {WEIGHTS} do not match {CONFIG}: {str(e).splitlines()[0][:200]}") from None
    return model.to(device).eval(), tokenizer


def _json(obj) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _read_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LabError(f"{str(path)!r} is not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise LabError(f"{str(path)!r} does not hold a JSON object")
    return obj
