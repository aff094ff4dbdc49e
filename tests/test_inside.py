"""The look-inside tools: hooks, logit lens, ablation, embeddings, neurons, induction scores."""

import pytest
import torch
import torch.nn.functional as F

from minilab.errors import LabError
from minilab.inside.ablate import ablate_heads, ablate_mlps, text_loss
from minilab.inside.embeddings import embedding_map, nearest
from minilab.inside.hooks import hooks, zero_head
from minilab.inside.induction import (
    ALPHABET,
    induction_scores,
    previous_token_scores,
    repeated_sequences,
    repeated_text,
)
from minilab.inside.lens import logit_lens
from minilab.inside.neurons import hidden_activations, top_neurons
from minilab.inside.windows import text_windows
from minilab.model.gpt import GPT
from minilab.tokenizers.char import CharTokenizer
from tests.conftest import tiny_model_config

SWITCHES = [
    {},
    {"pos_encoding": "learned"},
    {"pos_encoding": "rope"},
    {"pos_encoding": "none"},
    {"norm": "rmsnorm"},
    {"qk_norm": True},
    {"mlp": "relu2"},
    {"mlp": "swiglu"},
    {"mlp": "gelu_tanh"},
    {"mlp": "none"},
    {"tie_embeddings": False},
    {"bias": False},
    {"logit_softcap": 5.0},
]


def model_with(seed: int = 0, **switches) -> GPT:
    torch.manual_seed(seed)
    return GPT(tiny_model_config(**switches)).eval()


def ids(B: int = 2, T: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 20, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("switches", SWITCHES, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "seed")
def test_run_with_cache_names_every_intermediate_and_leaves_logits_bitwise_unchanged(switches):
    model = model_with(**switches)
    x = ids()
    logits, _ = model(x)
    cached_logits, cache = model.run_with_cache(x)
    assert torch.equal(cached_logits, logits)
    B, T, C, nh = 2, 12, 32, 4
    expected = {"embed": (B, T, C), "final_norm": (B, T, C), "logits": (B, T, 20)}
    for i in range(2):
        expected |= {
            f"blocks.{i}.attn.pattern": (B, nh, T, T),
            f"blocks.{i}.attn.heads": (B, nh, T, C // nh),
            f"blocks.{i}.attn.out": (B, T, C),
            f"blocks.{i}.resid_mid": (B, T, C),
            f"blocks.{i}.resid_post": (B, T, C),
        }
        if switches.get("mlp") != "none":
            hidden = model.blocks[i].mlp.proj.in_features
            expected |= {f"blocks.{i}.mlp.hidden": (B, T, hidden), f"blocks.{i}.mlp.out": (B, T, C)}
    assert {k: tuple(v.shape) for k, v in cache.items()} == expected
    assert torch.equal(cache["logits"], logits)
    # The cached pattern is the attention the explicit path computes, rows summing to 1.
    assert torch.allclose(cache["blocks.1.attn.pattern"], model.attention_maps(x)[1], atol=1e-6)
    assert all(p.fn is None and not p.edits for p in model.hook_points().values())  # nothing left behind


@pytest.mark.parametrize("switches", SWITCHES, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "seed")
def test_zeroing_a_head_through_the_hook_equals_zeroing_its_columns_of_the_projection(switches):
    model, x = model_with(**switches), ids()
    with hooks(model, {"blocks.1.attn.heads": zero_head(2)}):
        hooked, _ = model(x)
    hs = model.cfg.head_dim
    with torch.no_grad():
        model.blocks[1].attn.proj.weight[:, 2 * hs : 3 * hs] = 0.0  # head 2's share of the projection's input
    by_hand, _ = model(x)
    assert torch.allclose(hooked, by_hand, atol=1e-6)
    assert not torch.allclose(hooked, model_with(**switches)(x)[0], atol=1e-4)  # the head did matter


def test_replacing_the_pattern_uses_the_explicit_path_and_matches_the_fused_one():
    model, x = model_with(), ids()
    with hooks(model, {"blocks.0.attn.pattern": lambda p: p}):
        same, _ = model(x)
    assert torch.allclose(same, model(x)[0], atol=1e-5)
    first = torch.zeros(12, 12)
    first[:, 0] = 1.0  # every query reads only the first token
    with hooks(model, {"blocks.0.attn.pattern": lambda p: first.expand_as(p)}):
        changed, cache = model.run_with_cache(x)
    assert not torch.allclose(changed, same, atol=1e-4)
    assert torch.equal(cache["blocks.0.attn.pattern"][1, 3], first)
    # By hand: layer 0's attention output at every position is then what position 0 gives alone.
    with hooks(model, {"blocks.0.attn.pattern": lambda p: first.expand_as(p)}):
        out = model.run_with_cache(x)[1]["blocks.0.attn.out"]
    assert torch.allclose(out, out[:, :1].expand_as(out), atol=1e-6)


def test_hooks_reject_unknown_names_and_restore_on_error():
    model = model_with()
    with pytest.raises(LabError, match="no hook point named 'blocks.9.attn.heads'"):
        with hooks(model, {"blocks.9.attn.heads": zero_head(0)}):
            pass
    with pytest.raises(RuntimeError):
        with hooks(model, {"blocks.0.attn.heads": zero_head(0)}):
            raise RuntimeError("boom")
    assert all(p.fn is None and not p.edits for p in model.hook_points().values())


def test_attention_only_model_has_no_mlp_and_old_configs_keep_theirs():
    attn_only = model_with(mlp="none")
    assert all(b.mlp is None and b.ln2 is None for b in attn_only.blocks)
    assert not any(".mlp." in n for n, _ in attn_only.named_parameters())
    assert "mlp" in dict(model_with().blocks[0].named_children())


@pytest.mark.parametrize("switches", [{}, {"logit_softcap": 3.0}, {"norm": "rmsnorm", "tie_embeddings": False}])
def test_logit_lens_at_the_last_layer_is_the_models_own_distribution(switches):
    model, x = model_with(**switches), ids(B=1)
    probs = logit_lens(model, x)  # (n_layers + 1, T, V)
    assert probs.shape == (3, 12, 20)
    assert torch.allclose(probs[-1], F.softmax(model(x)[0][0], dim=-1), atol=1e-6)
    assert torch.allclose(probs.sum(-1), torch.ones(3, 12), atol=1e-5)


def test_ablating_nothing_leaves_the_loss_unchanged_and_ablating_something_changes_it():
    model = model_with()
    with torch.no_grad():  # at initialisation each branch writes almost nothing: make them matter
        for name, p in model.named_parameters():
            if name.endswith("proj.weight"):
                p.mul_(30.0)
    windows = torch.randint(0, 20, (6, 17), generator=torch.Generator().manual_seed(3))
    base = text_loss(model, windows)
    names = [f"blocks.{i}.attn.heads" for i in range(2)] + [f"blocks.{i}.mlp.out" for i in range(2)]
    with hooks(model, {name: (lambda z: z) for name in names}):
        assert abs(text_loss(model, windows) - base) < 1e-6
    # An independent reference: the loss straight from the model's own cross-entropy.
    _, loss = model(windows[:, :-1], windows[:, 1:].contiguous())
    assert abs(base - loss.item()) < 1e-5
    heads = ablate_heads(model, windows)
    assert heads.zero.shape == heads.mean.shape == (2, 4) and heads.base_loss == pytest.approx(base)
    assert heads.zero.abs().max() > 1e-4 and heads.mean.abs().max() > 1e-4
    mlps = ablate_mlps(model, windows)
    assert mlps.zero.shape == (2,) and mlps.zero.abs().max() > 1e-4
    with pytest.raises(LabError, match="no MLPs"):
        ablate_mlps(model_with(mlp="none"), windows)


def test_mean_ablating_a_head_whose_output_is_constant_changes_nothing():
    model = model_with()
    with torch.no_grad():  # head 1 of layer 0 sees v = bias only, so its output is the same everywhere
        hs = model.cfg.head_dim
        model.blocks[0].attn.qkv.weight[2 * 32 + hs : 2 * 32 + 2 * hs] = 0.0
        model.blocks[0].attn.qkv.bias[2 * 32 + hs : 2 * 32 + 2 * hs] = 1.0
        model.blocks[0].attn.proj.weight.mul_(30.0)
    windows = torch.randint(0, 20, (4, 13), generator=torch.Generator().manual_seed(4))
    result = ablate_heads(model, windows)
    assert abs(result.mean[0, 1]) < 1e-5 and abs(result.zero[0, 1]) > 1e-5


def test_induction_score_is_one_on_a_perfect_pattern_and_near_zero_on_a_uniform_one():
    half, T = 16, 32
    perfect = torch.zeros(1, 2, T, T)
    for i in range(T):
        perfect[0, :, i, i - half + 1 if i >= half else 0] = (
            1.0  # each query of the copy reads the token after its twin
        )
    assert torch.allclose(induction_scores(perfect, 0, half), torch.ones(2))
    uniform = torch.tril(torch.ones(T, T)) / torch.arange(1, T + 1).unsqueeze(1)
    score = induction_scores(uniform.expand(1, 2, T, T), 0, half)
    assert (score < 0.05).all()
    prev = torch.zeros(1, 1, T, T)
    prev[0, 0, torch.arange(1, T), torch.arange(T - 1)] = 1.0
    prev[0, 0, 0, 0] = 1.0
    assert previous_token_scores(prev).item() == pytest.approx(1.0)
    assert induction_scores(prev, 0, half).item() == pytest.approx(0.0)


def test_induction_score_follows_each_sequences_own_copy_distance():
    tokens, first, length = repeated_sequences(5, 32, 50, torch.Generator().manual_seed(0))
    assert len(set(length.tolist())) > 1  # the distance between the copies varies
    T = 31  # the model reads tokens[:, :-1]
    perfect = torch.zeros(5, 1, T, T)
    for b in range(5):
        f, m = int(first[b]), int(length[b])
        assert torch.equal(tokens[b, f : f + m], tokens[b, f + m : f + 2 * m]) and f + 2 * m <= 32
        for q in range(T):
            key = q - m + 1 if q >= f + m else q  # in the copy: the token after the twin; elsewhere: itself
            perfect[b, 0, q, key] = 1.0
    assert induction_scores(perfect, first, length).item() == pytest.approx(1.0)
    fixed = torch.zeros(5, 1, T, T)  # a head that always looks a fixed 8 back (the shortest copy distance)
    for q in range(T):
        fixed[:, 0, q, max(0, q - 7)] = 1.0
    assert induction_scores(fixed, first, length).item() < 0.5


def test_every_training_sequence_holds_a_whole_segment_and_its_copy():
    T, vocab = 65, 64
    tokens, first, length = repeated_sequences(200, T, vocab, torch.Generator().manual_seed(0))
    assert tokens.shape == (200, T) and int(tokens.min()) >= 0 and int(tokens.max()) < vocab
    assert int(length.min()) == T // 4 and int(length.max()) == T // 2  # the copy distance varies over its range
    assert int(first.min()) == 0 and len(set(first.tolist())) > 10  # and so does where the pair sits
    for b in range(200):
        f, m = int(first[b]), int(length[b])
        assert 0 <= f and f + 2 * m <= T  # the whole pair fits in the sequence, never cut by its edges
        segment = tokens[b, f : f + m]
        assert torch.equal(segment, tokens[b, f + m : f + 2 * m]) and len(set(segment.tolist())) == m
    with pytest.raises(LabError, match="vocabulary of at least"):
        repeated_sequences(1, 64, 20, torch.Generator())


def test_repeated_text_is_one_training_sequence_a_line():
    text = repeated_text(640, seed=3, line=64)
    lines = text.splitlines()
    assert len(lines) == 10 and all(len(line) == 64 and set(line) <= set(ALPHABET) for line in lines)
    tokens, _, _ = repeated_sequences(10, 64, len(ALPHABET), torch.Generator().manual_seed(3))
    assert lines == ["".join(ALPHABET[i] for i in row) for row in tokens.tolist()]


def test_text_windows_cap_and_spread():
    tok = CharTokenizer(list("abcdefgh"))
    text = "abcdefgh" * 100  # 800 tokens
    w = text_windows(tok, text, context_length=16, max_tokens=64)
    assert w.shape == (4, 17)
    assert w[-1, -1].item() == tok.encode(text[-1])[0]  # the last window reaches the end of the text
    assert text_windows(tok, "abc", 16, 100).shape == (1, 3)
    with pytest.raises(LabError, match="fewer than 2 tokens"):
        text_windows(tok, "a", 16, 100)


def test_embedding_map_and_neighbours():
    model = model_with()
    with torch.no_grad():
        model.tok_emb.weight[5] = model.tok_emb.weight[3] * 2.0  # same direction: cosine 1
    tok = CharTokenizer([chr(ord("a") + i) for i in range(20)])
    m = embedding_map(model, tok)
    assert m.coords.shape == (20, 2) and m.labels[0] == "a" and 0 < m.explained[1] <= m.explained[0] < 1
    # An independent reference for the PCA: torch's own low-rank PCA gives the same spread on each axis.
    _, S, _ = torch.pca_lowrank(model.tok_emb.weight.detach(), q=2, center=True, niter=10)
    assert torch.allclose(m.coords.std(dim=0), S / (20 - 1) ** 0.5, rtol=1e-3)
    near = nearest(model, 3, 2)
    assert near[0][0] == 5 and near[0][1] == pytest.approx(1.0, abs=1e-5)


def test_neurons_find_the_planted_one():
    model = model_with(mlp="relu2", pos_encoding="none")
    tok = CharTokenizer([chr(ord("a") + i) for i in range(20)])
    with torch.no_grad():  # neuron 7 of layer 0 fires on token 'c' only, and hard
        model.blocks[0].attn.proj.weight.zero_()  # layer 0's MLP then reads the token embedding alone
        fc = model.blocks[0].mlp.fc
        fc.weight[7] = 0.0
        fc.bias[7] = -1.0
        emb_c = model.blocks[0].ln2(model.tok_emb.weight[2:3].unsqueeze(0)).squeeze()
        fc.weight[7] = 50 * emb_c / emb_c.norm() ** 2
    windows = text_windows(tok, "abcdefghij" * 20, 16, 10_000)
    acts = hidden_activations(model, windows, 0)
    assert acts.shape == (windows.size(0), 16, 64)
    found = top_neurons(model, tok, windows, 0, n_neurons=1, n_snippets=2)
    assert found[0].index == 7
    s = found[0].snippets[0]
    assert s.tokens[s.focus] == "c"
    with pytest.raises(LabError, match="layers 0..1"):
        hidden_activations(model, windows, 2)


@pytest.mark.slow
def test_induction_command_trains_logs_and_draws(tmp_path, capsys):
    from minilab.app.cli import main

    out = tmp_path / "induction.png"
    assert main(["induction", "--steps", "20", "--eval_every", "10", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("|")[0].strip() for line in lines[:3]] == ["step     0", "step    10", "step    20"]
    assert "best induction head" in lines[0] and out.read_bytes()[:4] == b"\x89PNG"
    data = tmp_path / "repeats.txt"
    assert main(["induction", "--write_data", str(data)]) == 0
    text = data.read_text()
    assert len(text.replace("\n", "")) == 1_000_000 and set(text) <= set(ALPHABET + "\n")


@pytest.mark.slow
def test_lens_ablate_embeddings_neurons_commands_on_a_bpe_model(tmp_path, capsys):
    from minilab.app.cli import main
    from tests.conftest import EXAMPLE

    ck = tmp_path / "ck"
    flags = ["--tokenizer", "bpe", "--vocab_size", "300", "--preset", "tiny", "--epochs", "1", "--out_dir", str(ck)]
    assert main(["train", "--data", str(EXAMPLE), *flags, "--experiments_dir", str(tmp_path / "exp")]) == 0
    ckpt, data = str(ck / "best_model.pt"), str(EXAMPLE)
    capsys.readouterr()
    assert main(["lens", "--checkpoint", ckpt, "--prompt", "The model learns", "--out", str(tmp_path / "l.png")]) == 0
    assert "mean p(next)" in capsys.readouterr().out
    assert main(["ablate", "--checkpoint", ckpt, "--data", data, "--max_tokens", "256"]) == 0
    assert "most important" in capsys.readouterr().out
    assert main(["embeddings", "--checkpoint", ckpt, "--out", str(tmp_path / "e.png")]) == 0
    assert "nearest neighbours" in capsys.readouterr().out
    assert main(["neurons", "--checkpoint", ckpt, "--data", data, "--layer", "1", "--max_tokens", "512"]) == 0
    assert capsys.readouterr().out.count("neuron ") == 5
    for name in ("l.png", "e.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
