"""Sharing a model: weights as .safetensors plus config and tokenizer as JSON, in one directory.

``export_model`` writes model.safetensors, config.json and tokenizer.json; ``minilab.checkpoint.load_export``
reads them back. safetensors holds raw tensors only, so loading a shared model can never run code.
"""

from pathlib import Path

from minilab.checkpoint import CONFIG, TIED, TOKENIZER, WEIGHTS
from minilab.errors import LabError
from minilab.files import atomic_write, json_bytes
from minilab.model.gpt import GPT


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
    files = {WEIGHTS: blob, CONFIG: json_bytes(model.cfg.to_dict()), TOKENIZER: json_bytes(tokenizer.to_dict())}
    for name, data in files.items():
        atomic_write(out / name, lambda f, data=data: f.write(data))
    return [out / name for name in files]
