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

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from minilab.checkpoint import load_checkpoint, resolve_checkpoint
from minilab.errors import LabError
from minilab.model.config import ModelConfig
from minilab.tokenizers.char import build_tokenizer, tokenizer_from_dict
from minilab.tokenizers.special import has_chat_tokens, with_chat_tokens
from minilab.training.config import TrainConfig
from minilab.training.conversations import (
    ConversationData,
    check_encodable,
    encode_conversations,
    is_conversations,
    read_conversations,
)
from minilab.training.data import Splits, load_training_data, read_text
from minilab.training.prepare import is_prepared

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


@dataclass
class Start:
    """What a run starts from: the model's shape, the tokenizer, the data to draw from, and initial weights."""

    model_cfg: ModelConfig
    tokenizer: object
    data: Splits | ConversationData
    weights: dict | None  # a fine-tuning run's first weights; None: random (or a resumed run's own)


def starting_point(cfg: TrainConfig, model_cfg: ModelConfig, resume: dict | None = None) -> Start:
    """Read and check the data, and settle the tokenizer and model shape: a new run's, a resumed one's, or
    (with ``cfg.init_from``) the checkpoint's that a fine-tuning run starts from. Writes nothing."""
    saved = tokenizer_from_dict(resume["tokenizer"]) if resume is not None else None
    chat, weights = is_conversations(cfg.data), None
    if resume is None and cfg.init_from:
        source = resolve_checkpoint(cfg.init_from)
        if source.resolve().parent == Path(cfg.out_dir).resolve():
            raise LabError(
                f"--out_dir {cfg.out_dir} holds the checkpoint this run starts from; give the new run "
                "another --out_dir so that it does not overwrite it"
            )
        model_cfg, saved, weights = start_from(load_checkpoint(source), chat)
        if not chat and not is_prepared(cfg.data):
            missing = saved.unknown(read_text(cfg.data))
            if missing:
                shown = " ".join(repr(c) for c in missing[:20]) + (" ..." if len(missing) > 20 else "")
                raise LabError(
                    f"{cfg.data} has {len(missing)} character(s) the checkpoint's vocabulary lacks: {shown}; "
                    "a fine-tuned model cannot learn new characters (pretrain on text that has them, or use BPE)"
                )
    if chat and resume is not None and not has_chat_tokens(saved):
        raise LabError(
            f"the checkpoint was trained on text, without chat tokens; a resumed run cannot switch to "
            f"conversations: start a new run from it with finetune --from CKPT --data {cfg.data}"
        )
    if chat:
        conversations = read_conversations(cfg.data)
        if saved is None:  # a new model on conversations: a vocabulary from their text
            text = "".join(m["content"] for c in conversations for m in c.messages)
            saved = build_tokenizer(cfg.tokenizer, text, cfg.vocab_size)
        tokenizer = with_chat_tokens(saved)
        check_encodable(tokenizer, conversations, cfg.data)
        data = encode_conversations(tokenizer, conversations, model_cfg.context_length, cfg.val_fraction, cfg.mask_loss)
    else:
        tokenizer, data = load_training_data(
            cfg.data, cfg.val_fraction, model_cfg.context_length, saved, cfg.tokenizer, cfg.vocab_size
        )
    if resume is None and weights is None:  # a new model: its vocabulary is the tokenizer's
        model_cfg = replace(model_cfg, vocab_size=tokenizer.vocab_size)
    return Start(model_cfg, tokenizer, data, weights)


def load_weights(model, weights: dict, source: str) -> None:
    """Put a fine-tuning run's first weights into ``model``; a LabError if they do not fit it."""
    try:
        model.load_state_dict(weights)
    except (RuntimeError, KeyError) as e:
        detail = str(e).splitlines()[0][:160]
        raise LabError(f"the weights of {source} do not fit its model config ({detail})") from None
