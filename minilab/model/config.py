"""The model's typed settings, validated once when they are made.

A plain dataclass that turns into JSON-ready dicts (``to_dict``) and back (``from_dict``),
so a checkpoint and an experiment folder carry exactly the settings that made it.
"""

from dataclasses import dataclass, fields

from minilab.checks import DictConfig, check_bool, check_choice, check_float, check_int, setting
from minilab.errors import LabError

POS_ENCODINGS = ("sinusoidal", "learned", "rope", "none")
NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "gelu_tanh", "relu2", "swiglu", "none")


@dataclass
class ModelConfig(DictConfig):
    """The shape of the transformer. Defaults are the seed's: 256 context, 256 wide, 8 heads, 4 layers."""

    what = "model config"

    vocab_size: int = setting(65, "tokens the model knows (set from the data's tokenizer)")
    context_length: int = setting(256, "tokens the model attends over (block_size in nanoGPT)")
    d_model: int = setting(256, "model width: the residual stream (n_embd)")
    n_heads: int = setting(8, "attention heads per layer; each is d_model / n_heads wide")
    n_layers: int = setting(4, "transformer blocks")
    d_ff: int = setting(1024, "feed-forward hidden width (a fixed number, not a multiple of d_model)")
    dropout: float = setting(0.1, "dropout on embeddings and on each residual branch, during training only")
    pos_encoding: str = setting("sinusoidal", "position encoding (sinusoidal is the seed's)", choices=POS_ENCODINGS)
    # Architecture switches, one per idea; the defaults are the seed's classic GPT. A checkpoint
    # saved before a switch existed lacks its key and so loads with the default, as it was trained.
    norm: str = setting(
        "layernorm", "normalisation in every block (rmsnorm: scale only, no mean, no bias)", choices=NORMS
    )
    qk_norm: bool = setting(False, "normalise queries and keys per head before attention")
    mlp: str = setting(
        "gelu",
        "feed-forward activation (gelu_tanh: GPT-2's tanh approximation, for imported GPT-2s); swiglu uses "
        "a hidden width of 2/3 d_ff, so the parameter count stays about the same; none: attention only "
        "(the induction-head experiment)",
        choices=MLPS,
    )
    tie_embeddings: bool = setting(True, "share the token embedding with the output head")
    bias: bool = setting(True, "biases in linear layers and layer norms")
    logit_softcap: float = setting(0.0, "logits = C tanh(logits / C), 0 = off", metavar="C")

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context_length", "d_model", "n_heads", "n_layers", "d_ff"):
            check_int(name, getattr(self, name), low=1, high=1 << 20)
        check_float("dropout", self.dropout, low=0.0, high=1.0, high_open=True)
        if self.d_model % self.n_heads:
            raise LabError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        check_choice("pos_encoding", self.pos_encoding, POS_ENCODINGS)
        check_choice("norm", self.norm, NORMS)
        check_choice("mlp", self.mlp, MLPS)
        for name in ("qk_norm", "tie_embeddings", "bias"):
            check_bool(name, getattr(self, name))
        check_float("logit_softcap", self.logit_softcap, low=0.0, high=1e6)
        if self.pos_encoding == "rope" and self.head_dim % 2:
            raise LabError(f"rope rotates pairs of channels: d_model/n_heads ({self.head_dim}) must be even")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


# The fast decode path (minilab/generation/fastdecode.py) spells out one architecture: for every
# ModelConfig field, the values it handles (None: any value). A field missing here keeps a model
# off the fast path, and tests/test_kvcache.py fails until it is declared, so a new switch cannot
# silently reach code that ignores it.
FAST_DECODE_SUPPORTS: dict[str, tuple | None] = {
    "vocab_size": None,
    "context_length": None,
    "d_model": None,
    "n_heads": None,
    "n_layers": None,
    "d_ff": None,
    "dropout": None,  # decoding runs in eval mode: no dropout
    "pos_encoding": ("sinusoidal", "learned"),
    "norm": ("layernorm",),
    "qk_norm": (False,),
    "mlp": ("gelu",),
    "tie_embeddings": (True,),
    "bias": (True,),
    "logit_softcap": (0.0,),
}


def fast_decode_supports(cfg: ModelConfig) -> bool:
    """True if every field of ``cfg`` is declared in FAST_DECODE_SUPPORTS and holds a value listed there."""
    return all(
        f.name in FAST_DECODE_SUPPORTS
        and (FAST_DECODE_SUPPORTS[f.name] is None or getattr(cfg, f.name) in FAST_DECODE_SUPPORTS[f.name])
        for f in fields(cfg)
    )
