import math

import pytest
import torch

from minilab.model import GPT, explicit_attention
from tests.conftest import tiny_model_config


@pytest.mark.parametrize("pos", ["sinusoidal", "learned"])
def test_causality(pos):
    """Changing a later token never changes the logits at earlier positions."""
    torch.manual_seed(0)
    model = GPT(tiny_model_config(pos_encoding=pos)).eval()
    idx = torch.randint(0, 20, (2, 16))
    changed = idx.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % 20
    a, _ = model(idx)
    b, _ = model(changed)
    assert torch.allclose(a[:, :10], b[:, :10], atol=1e-6)
    assert not torch.allclose(a[:, 10:], b[:, 10:], atol=1e-3)


@pytest.mark.parametrize("pos", ["sinusoidal", "learned"])
def test_explicit_and_fused_attention_agree(pos):
    torch.manual_seed(1)
    model = GPT(tiny_model_config(pos_encoding=pos)).eval()
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
