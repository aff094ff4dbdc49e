"""Which outside model family computes exactly what a lab model computes, or a one-line refusal saying why none does.

The lab's switches (minilab/model/config.py) each change one part of the maths. A family of Hugging Face
transformers (and of llama.cpp) fixes most of those parts, so a model can go to a family only if every
switch has the family's value: anything else would be a silently different model. The checks below are
the whole contract, shared by ``export --format hf`` and ``--format gguf``.
"""

from minilab.errors import LabError
from minilab.model.config import ModelConfig

# family -> the values each switch may take in it. What the family cannot express is absent from its list.
FAMILIES: dict[str, dict[str, tuple]] = {
    # GPT-2: pre-norm LayerNorm blocks, a GELU MLP, a position table added to the embeddings, biases.
    # Sinusoidal and 'none' positions are fixed tables (the sinusoid, or zeros) in its learned wpe slot;
    # a model without biases has zero biases.
    "gpt2": {
        "norm": ("layernorm",),
        "mlp": ("gelu", "gelu_tanh"),
        "pos_encoding": ("learned", "sinusoidal", "none"),
        "qk_norm": (False,),
        "logit_softcap": (0.0,),
    },
    # Llama: RMSNorm, SwiGLU, RoPE on the two halves of each head (rotate_half, the lab's pairing).
    # Its attention_bias and mlp_bias cover the lab's bias switch.
    "llama": {
        "norm": ("rmsnorm",),
        "mlp": ("swiglu",),
        "pos_encoding": ("rope",),
        "qk_norm": (False,),
        "logit_softcap": (0.0,),
    },
    # Qwen3: Llama plus a per-head RMSNorm of q and k before the rotation, as the lab's qk_norm does.
    # Its MLP has no biases, so only a model without biases fits.
    "qwen3": {
        "norm": ("rmsnorm",),
        "mlp": ("swiglu",),
        "pos_encoding": ("rope",),
        "qk_norm": (True,),
        "logit_softcap": (0.0,),
        "bias": (False,),
    },
}


# llama.cpp's architectures of the same names. Its gpt2 computes GELU with the tanh approximation, so
# only the lab's 'gelu_tanh' (an imported GPT-2) fits it, not the exact GELU the lab trains with.
GGUF_FAMILIES = FAMILIES | {"gpt2": FAMILIES["gpt2"] | {"mlp": ("gelu_tanh",)}}


def mismatches(cfg: ModelConfig, family: str, table: dict = FAMILIES) -> list[str]:
    """The switches of ``cfg`` that ``family`` has no exact counterpart for, as 'name=value'."""
    return [f"{name}={getattr(cfg, name)!r}" for name, ok in table[family].items() if getattr(cfg, name) not in ok]


def choose_family(
    cfg: ModelConfig, families: tuple[str, ...], target: str, table: dict = FAMILIES, note: str = ""
) -> str:
    """The one family of ``families`` that computes this model exactly; else a LabError naming the switch."""
    for family in families:
        if not mismatches(cfg, family, table):
            return family
    closest = min(families, key=lambda f: len(mismatches(cfg, f, table)))
    tried = "; ".join(f"{f}: {', '.join(mismatches(cfg, f, table))}" for f in families)
    raise LabError(
        f"cannot export to {target}: {', '.join(mismatches(cfg, closest, table))} has no exact counterpart "
        f"in any family tried (what each one lacks: {tried}){note}"
    )
