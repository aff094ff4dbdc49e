"""Fine-tuning: a new run that starts from a trained model's weights and tokenizer instead of random ones.

Unlike ``--resume`` (the same run, continued), a fine-tuning run is a run of its own: new data,
fresh optimizer state, its own learning-rate schedule, its own experiment folder and checkpoints.
The model's shape is the checkpoint's. On conversations (a .jsonl file) the tokenizer grows by the
chat markers (minilab/tokenizers/special.py), and so does the model: ``grow_vocabulary`` gives the
token embedding (and an untied output head) one new row per marker.

The new rows start as the mean of the existing rows, not random: the model then reads a marker as
"an average token" and, through the tied head, gives it an average logit, instead of a random
vector that could be far from anything the network has seen and a logit that may dominate or
vanish. (Hewitt, "Initializing new word embeddings for pretrained language models", 2021.)
"""

from dataclasses import replace

import torch

from minilab.errors import LabError
from minilab.model.config import ModelConfig
from minilab.tokenizers.char import tokenizer_from_dict
from minilab.tokenizers.special import with_chat_tokens

GROWN = ("tok_emb.weight", "lm_head.weight")  # the matrices with one row per token


def grow_vocabulary(state: dict, old_size: int, new_size: int) -> dict:
    """A copy of ``state`` whose per-token matrices have ``new_size`` rows, the new ones the mean of the old."""
    out = dict(state)
    for name in GROWN:
        if name not in state:
            continue  # a tied head is stored as tok_emb.weight only in exports; both names in checkpoints
        w = state[name]
        if w.size(0) != old_size:
            raise LabError(f"the checkpoint's {name} has {w.size(0)} rows, its tokenizer {old_size} tokens")
        mean = w.float().mean(dim=0, keepdim=True).to(w.dtype)  # (1, C)
        out[name] = torch.cat([w, mean.expand(new_size - old_size, -1)], dim=0)  # (new_size, C)
    return out


def start_from(ckpt: dict, chat: bool):
    """(model config, tokenizer, weights) of a fine-tuning run from ``ckpt``; ``chat`` adds the chat markers."""
    model_cfg = ModelConfig.from_dict(ckpt["model_config"])
    tokenizer = tokenizer_from_dict(ckpt["tokenizer"])
    if tokenizer.vocab_size != model_cfg.vocab_size:
        raise LabError(
            f"the checkpoint's tokenizer has {tokenizer.vocab_size} tokens but its model {model_cfg.vocab_size}"
        )
    state = ckpt["model_state"]
    if chat:
        grown = with_chat_tokens(tokenizer)
        if grown.vocab_size != tokenizer.vocab_size:
            state = grow_vocabulary(state, tokenizer.vocab_size, grown.vocab_size)
            if model_cfg.tie_embeddings and "lm_head.weight" in state:
                state["lm_head.weight"] = state["tok_emb.weight"]  # one matrix, as in the model
        tokenizer = grown
    return replace(model_cfg, vocab_size=tokenizer.vocab_size), tokenizer, state
