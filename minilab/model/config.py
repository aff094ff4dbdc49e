"""The model's typed settings, validated once when they are made.

A plain dataclass that turns into JSON-ready dicts (``to_dict``) and back (``from_dict``),
so a checkpoint and an experiment folder carry exactly the settings that made it.
"""

from dataclasses import asdict, dataclass

from minilab.checks import check_bool, check_choice, check_float, check_int, from_dict
from minilab.errors import LabError

POS_ENCODINGS = ("sinusoidal", "learned", "rope", "none")
NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "relu2", "swiglu", "none")


@dataclass
class ModelConfig:
    """The shape of the transformer. Defaults are the seed's: 256 context, 256 wide, 8 heads, 4 layers."""

    vocab_size: int = 65
    context_length: int = 256  # longest sequence the model attends over (block_size in nanoGPT)
    d_model: int = 256  # width of the residual stream (n_embd)
    n_heads: int = 8  # attention heads per layer; each is d_model // n_heads wide
    n_layers: int = 4  # transformer blocks
    d_ff: int = 1024  # hidden width of the feed-forward network
    dropout: float = 0.1  # dropout on embeddings and on each residual branch, during training only
    pos_encoding: str = "sinusoidal"  # 'sinusoidal' (fixed, as the seed draws it), 'learned', 'rope' or 'none'
    # Architecture switches, one per idea; the defaults are the seed's classic GPT. A checkpoint
    # saved before a switch existed lacks its key and so loads with the default, as it was trained.
    norm: str = "layernorm"  # 'layernorm' or 'rmsnorm' (scale only: no mean subtraction, no bias)
    qk_norm: bool = False  # normalise queries and keys per head before attention
    mlp: str = (
        "gelu"  # 'gelu', 'relu2' (relu squared), 'swiglu' (gated; hidden ~2/3 of d_ff) or 'none' (attention only)
    )
    tie_embeddings: bool = True  # the output head shares the token embedding matrix
    bias: bool = True  # biases in the linear layers and layer norms
    logit_softcap: float = 0.0  # logits = C * tanh(logits / C); 0 = off

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

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return from_dict(cls, d, "model config")
