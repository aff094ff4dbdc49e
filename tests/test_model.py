import math

import pytest
import torch

from minilab.model.config import ModelConfig
from minilab.model.gpt import GPT, explicit_attention
from minilab.model.layers import Dropout, RMSNorm, swiglu_hidden
from minilab.model.positions import Rotary
from tests.conftest import tiny_model_config
from tests.test_kvcache import ARCHS, _model


@pytest.mark.parametrize("arch", ARCHS)
def test_causality(arch):
    """Changing a later token never changes the logits at earlier positions."""
    model = _model(arch)
    idx = torch.randint(0, 20, (2, 16))
    changed = idx.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % 20
    a, _ = model(idx)
    b, _ = model(changed)
    assert torch.allclose(a[:, :10], b[:, :10], atol=1e-6)
    assert not torch.allclose(a[:, 10:], b[:, 10:], atol=1e-3)


@pytest.mark.parametrize("arch", ARCHS)
def test_explicit_and_fused_attention_agree(arch):
    model = _model(arch, seed=1)
    idx = torch.randint(0, 20, (3, 16))
    fused, _ = model(idx)
    model.set_fused_attention(False)
    explicit, _ = model(idx)
    assert torch.allclose(fused, explicit, atol=1e-5)


def test_explicit_attention_matches_sdpa_directly():
    torch.manual_seed(2)
    q, k, v = (torch.randn(2, 4, 9, 8) for _ in range(3))
    out, weights = explicit_attention(q, k, v)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.allclose(out, ref, atol=1e-5)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 4, 9))
    assert torch.all(weights.triu(1) == 0)  # nothing from the future


def test_attention_maps_shape_and_rows():
    torch.manual_seed(3)
    model = GPT(tiny_model_config()).eval()
    maps = model.attention_maps(torch.randint(0, 20, (1, 12)))
    assert len(maps) == 2 and maps[0].shape == (1, 4, 12, 12)
    for m in maps:
        assert torch.allclose(m.sum(-1), torch.ones(1, 4, 12), atol=1e-6)
        assert torch.all(m.triu(1) == 0)


def test_initial_loss_near_log_vocab():
    torch.manual_seed(4)
    cfg = tiny_model_config(vocab_size=65)
    model = GPT(cfg)
    idx = torch.randint(0, 65, (8, 16))
    _, loss = model(idx, torch.randint(0, 65, (8, 16)))
    assert abs(loss.item() - math.log(65)) < 0.15


def test_head_tied_to_embedding():
    model = GPT(tiny_model_config())
    assert model.lm_head.weight is model.tok_emb.weight
    assert model.num_params() == sum(p.numel() for p in set(model.parameters()))


def test_tiny_model_overfits_tiny_batch():
    torch.manual_seed(5)
    model = GPT(tiny_model_config())
    x = torch.randint(0, 20, (4, 16))
    y = torch.randint(0, 20, (4, 16))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(150):
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1


def test_too_long_sequence_is_refused():
    model = GPT(tiny_model_config())
    with pytest.raises(ValueError):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_sinusoidal_table_not_saved_learned_is():
    sin = GPT(tiny_model_config(pos_encoding="sinusoidal")).state_dict()
    learned = GPT(tiny_model_config(pos_encoding="learned")).state_dict()
    assert not any("pos_table" in k for k in sin)
    assert "pos_emb.weight" in learned


def test_rope_matches_a_complex_number_reference():
    """RoPE is multiplication by e^(i p theta_j) of the complex numbers (x_j, x_(j + hs/2))."""
    torch.manual_seed(6)
    hs, T, start = 8, 5, 3
    x = torch.randn(2, 3, T, hs, dtype=torch.float64)
    ours = Rotary(hs, 16)(x.float(), start).double()
    theta = 10000.0 ** (-torch.arange(0, hs, 2, dtype=torch.float64) / hs)  # (hs/2,)
    pos = torch.arange(start, start + T, dtype=torch.float64)[:, None]  # (T, 1)
    z = torch.complex(x[..., : hs // 2], x[..., hs // 2 :]) * torch.polar(torch.ones(T, hs // 2).double(), pos * theta)
    ref = torch.cat([z.real, z.imag], dim=-1)
    assert torch.allclose(ours, ref, atol=1e-5)


def test_rope_scores_depend_only_on_the_distance():
    torch.manual_seed(7)
    rot = Rotary(8, 64)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)
    scores = [(rot(q, p + 5) * rot(k, p)).sum().item() for p in (0, 11, 40)]
    assert scores == pytest.approx([scores[0]] * 3, abs=1e-5)
    assert (rot(q, 5) * rot(k, 0)).sum().item() != pytest.approx((rot(q, 6) * rot(k, 0)).sum().item(), abs=1e-3)


def test_rmsnorm_is_the_formula():
    torch.manual_seed(8)
    norm = RMSNorm(6)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(6))
    x = torch.randn(3, 4, 6) * 5 + 2
    ref = x / torch.sqrt((x**2).mean(-1, keepdim=True) + 1e-5) * norm.weight
    assert torch.allclose(norm(x), ref, atol=1e-5)


@pytest.mark.parametrize("p", [0.1, 0.37, 0.5])
def test_dropout_drops_p_of_the_elements_and_keeps_the_mean(p):
    torch.manual_seed(3)
    drop = Dropout(p).train()
    x = torch.rand(4, 257, 129) + 0.5  # an odd count: the last draw's spare quarters go unused
    y = drop(x)
    dropped = (y == 0).float()
    rate = round(p * 4096) / 4096
    assert abs(rate - p) <= 1 / 8192
    # 132,612 elements: the dropped fraction's standard error is under 0.0014
    assert dropped.mean().item() == pytest.approx(rate, abs=0.006)
    for quarter in range(4):  # each quarter of a 64-bit draw is its own uniform number
        assert dropped.flatten()[:132608].view(-1, 4)[:, quarter].mean().item() == pytest.approx(rate, abs=0.012)
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / (1 - rate), rtol=1e-6)
    assert y.sum().item() == pytest.approx(x.sum().item(), rel=0.01)  # the mean survives the scaling
    # no pattern between neighbours: two adjacent elements are dropped together about rate^2 of the time
    both = (dropped[..., :-1] * dropped[..., 1:]).mean().item()
    assert both == pytest.approx(rate * rate, abs=0.006)


def test_dropout_rates_near_0_and_1_still_drop_and_keep():
    x = torch.ones(64, 1024)
    torch.manual_seed(1)
    assert Dropout(1e-6).cut == 1 and (Dropout(1e-6).train()(x) == 0).any()
    kept = Dropout(0.99999).train()(x)
    assert Dropout(0.99999).cut == 4095 and torch.isfinite(kept).all() and (kept == 4096).any()


def test_dropout_is_off_in_eval_mode_at_zero_and_follows_the_seed():
    x = torch.randn(2, 8, 16, requires_grad=True)
    assert Dropout(0.3).eval()(x) is x and Dropout(0.0).train()(x) is x
    drop = Dropout(0.3).train()
    torch.manual_seed(5)
    a = drop(x)
    torch.manual_seed(5)
    b = drop(x)
    assert torch.equal(a, b) and not torch.equal(a, drop(x))
    a.sum().backward()  # the gradient flows through the kept elements only, scaled like them
    assert torch.equal(x.grad, (a != 0).float() * (4096 / (4096 - drop.cut)))


def test_each_switch_builds_what_it_says():
    d, ff = 32, 64
    base = GPT(tiny_model_config()).num_params()
    swiglu = GPT(tiny_model_config(mlp="swiglu"))
    assert swiglu_hidden(ff) == 43 and swiglu.blocks[0].mlp.fc.weight.shape == (2 * 43, d)
    assert abs(swiglu.num_params() - base) / base < 0.02  # comparable parameter count
    untied = GPT(tiny_model_config(tie_embeddings=False))
    assert untied.lm_head.weight is not untied.tok_emb.weight
    assert untied.num_params() == base + 20 * d
    no_bias = GPT(tiny_model_config(bias=False))
    assert not any(n.endswith(".bias") for n, _ in no_bias.named_parameters())
    rms = GPT(tiny_model_config(norm="rmsnorm", qk_norm=True))
    assert isinstance(rms.ln_f, RMSNorm) and isinstance(rms.blocks[1].attn.k_norm, RMSNorm)
    for pos in ("rope", "none"):
        assert not any("pos" in n for n, _ in GPT(tiny_model_config(pos_encoding=pos)).state_dict().items())


def test_logit_softcap_is_c_tanh_of_the_raw_logits():
    torch.manual_seed(9)
    raw_model = GPT(tiny_model_config())
    capped = GPT(tiny_model_config(logit_softcap=0.1))
    capped.load_state_dict(raw_model.state_dict())
    idx = torch.randint(0, 20, (2, 16))
    raw, _ = raw_model(idx)
    logits, _ = capped(idx)
    assert raw.abs().max() > 0.2  # the cap bends something
    assert torch.allclose(logits, 0.1 * torch.tanh(raw / 0.1), atol=1e-6) and logits.abs().max() <= 0.1


def test_config_saved_before_the_switches_loads_with_the_seed_defaults():
    old = {k: v for k, v in tiny_model_config().to_dict().items()}
    for key in ("norm", "qk_norm", "mlp", "tie_embeddings", "bias", "logit_softcap"):
        del old[key]
    cfg = ModelConfig.from_dict(old)
    assert (cfg.norm, cfg.qk_norm, cfg.mlp, cfg.tie_embeddings, cfg.bias, cfg.logit_softcap) == (
        "layernorm",
        False,
        "gelu",
        True,
        True,
        0.0,
    )
    GPT(cfg).load_state_dict(GPT(tiny_model_config()).state_dict())  # the same parameters as before


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"norm": "batchnorm"}, "norm 'batchnorm': choose one of layernorm, rmsnorm"),
        ({"mlp": "tanh"}, "mlp 'tanh': choose one of gelu"),
        ({"qk_norm": 1}, "qk_norm must be true or false"),
        ({"logit_softcap": -1.0}, "logit_softcap must be in"),
        ({"pos_encoding": "rope", "d_model": 36, "n_heads": 4}, "must be even"),
    ],
)
def test_bad_switches_are_refused(overrides, message):
    from minilab.errors import LabError

    with pytest.raises(LabError, match=message):
        tiny_model_config(**overrides)
