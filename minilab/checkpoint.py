"""Saving and loading checkpoints: tensors and plain values only, written atomically, read safely.

A checkpoint is one ``torch.save`` of a dict. It is loaded with ``weights_only=True``, so a file
that would need to run code to unpickle is refused instead of executed.
"""

import io
import pickle
import zipfile
from pathlib import Path

import torch

from minilab.errors import LabError
from minilab.files import atomic_write, read_json
from minilab.model.config import ModelConfig
from minilab.model.gpt import GPT
from minilab.tokenizers.char import tokenizer_from_dict

FORMAT = "minilab-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("model_state", "model_config", "tokenizer")
DEFAULT_DIR = "checkpoints"
# An export directory (`export`): weights as safetensors, config and tokenizer as JSON.
WEIGHTS, CONFIG, TOKENIZER = "model.safetensors", "config.json", "tokenizer.json"
TIED = "lm_head.weight"  # with tie_embeddings, the same matrix as tok_emb.weight: stored once


def checkpoint_bytes(payload: dict) -> bytes:
    """Serialise a checkpoint dict, stamped with the format and its version."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **payload}, buf)
    return buf.getvalue()


def save_checkpoint(paths, payload: dict) -> None:
    """Write a checkpoint atomically to one path or to each of a list of paths (serialised once)."""
    data = checkpoint_bytes(payload)
    for path in [paths] if isinstance(paths, (str, Path)) else paths:
        atomic_write(path, lambda f: f.write(data))


def resolve_checkpoint(name: str | Path, search_dirs=(DEFAULT_DIR,)) -> Path:
    """Find a checkpoint: the path as given, else a bare name inside each of ``search_dirs``."""
    p = Path(name)
    if p.exists():
        return p
    looked = [str(p)]
    if p.parent == Path("."):
        for d in search_dirs:
            candidate = Path(d) / p
            looked.append(str(candidate))
            if candidate.exists():
                return candidate
    raise LabError(f"checkpoint {str(name)!r} not found (looked for {' and '.join(looked)})")


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load and check a checkpoint without executing any code from it."""
    p = Path(path)
    if p.is_dir():
        raise LabError(
            f"checkpoint {str(p)!r} is a directory, not a checkpoint file (nor an export with model.safetensors)"
        )
    if p.stat().st_size == 0:
        raise LabError(f"checkpoint {str(p)!r} is empty")
    if not zipfile.is_zipfile(p):  # torch.save writes a zip archive; anything else is not ours
        raise LabError(f"checkpoint {str(p)!r} is not a checkpoint file (truncated, or another kind of file)")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # weights_only refuses anything but tensors and plain values, e.g. a pickle that runs code.
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unsupported content"
        raise LabError(
            f"checkpoint {str(p)!r} was refused by the safe loader (it holds more than "
            f"tensors and plain values): {first}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as e:
        raise LabError(
            f"checkpoint {str(p)!r} is not a readable checkpoint (truncated or not a PyTorch file): {type(e).__name__}"
        ) from None
    except OSError as e:
        raise LabError(f"cannot read checkpoint {str(p)!r}: {e.strerror or e}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise LabError(f"{str(p)!r} is a PyTorch file but not a mini-transformer-lab checkpoint")
    version = ckpt.get("format_version")
    if version != FORMAT_VERSION:
        raise LabError(
            f"checkpoint {str(p)!r} has format version {version!r}; this version of the lab "
            f"reads version {FORMAT_VERSION}"
        )
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise LabError(f"checkpoint {str(p)!r} is missing {', '.join(missing)}")
    return ckpt


def model_from_checkpoint(ckpt: dict, device="cpu"):
    """Rebuild (model, tokenizer) from a loaded checkpoint dict; the model is in eval mode."""
    cfg = ModelConfig.from_dict(ckpt["model_config"])
    tokenizer = tokenizer_from_dict(ckpt["tokenizer"])
    if tokenizer.vocab_size != cfg.vocab_size:
        raise LabError(
            f"checkpoint's tokenizer has {tokenizer.vocab_size} tokens but its model expects {cfg.vocab_size}"
        )
    model = GPT(cfg)
    try:
        model.load_state_dict(ckpt["model_state"])
    except (RuntimeError, KeyError, TypeError) as e:
        detail = str(e).strip().splitlines()[0][:200]
        raise LabError(f"checkpoint's weights do not match its model config: {detail}") from None
    return model.to(device).eval(), tokenizer


def load_model(name: str | Path, device="cpu"):
    """Find, load and rebuild a checkpoint (path or bare name) or an export directory.

    Returns (model, tokenizer, ckpt); ckpt is None for an export directory, which has no training state.
    """
    if is_export_dir(name):
        model, tokenizer = load_export(name, device)
        return model, tokenizer, None
    ckpt = load_checkpoint(resolve_checkpoint(name))
    model, tokenizer = model_from_checkpoint(ckpt, device)
    return model, tokenizer, ckpt


def is_export_dir(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / WEIGHTS).exists()


def load_export(path: str | Path, device="cpu"):
    """Rebuild (model, tokenizer) from an export directory; the model is in eval mode."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    d = Path(path)
    for name in (WEIGHTS, CONFIG, TOKENIZER):
        if not (d / name).is_file():
            raise LabError(f"export directory {str(d)!r} has no {name}")
    config = read_json(d / CONFIG)
    if "model_type" in config:  # written by transformers or `export --format hf`, not by the lab's export
        raise LabError(
            f"{str(d)!r} is a Hugging Face {config['model_type']!r} folder, not a lab export; "
            "`import --from` reads GPT-2-family folders"
        )
    cfg = ModelConfig.from_dict(config)
    tokenizer = tokenizer_from_dict(read_json(d / TOKENIZER))
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
