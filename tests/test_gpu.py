"""CUDA paths: bf16 autocast training, fused AdamW, TF32, flash attention, cached generation on the GPU.

Skipped cleanly where there is no CUDA GPU (CI has none); run them on a machine that has one.
"""

import pytest
import torch

from minilab.generation.decode import CachedDecoder
from minilab.generation.fastdecode import FastDecoder
from minilab.model.gpt import GPT
from minilab.training.trainer import Trainer
from tests.conftest import tiny_model_config, tiny_train_config

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")]


def test_bf16_autocast_training_with_fused_adamw_and_tf32(tmp_path):
    trainer = Trainer(
        tiny_train_config(tmp_path, device="cuda", epochs=1),
        tiny_model_config(context_length=32),
        log=lambda *_: None,
        progress=False,
    )
    assert trainer.optimizers[0].defaults["fused"] is True
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert trainer.amp_dtype == expected
    result = trainer.fit()
    assert torch.backends.cuda.matmul.allow_tf32
    assert result.final_train_loss < 4.0 and next(trainer.model.parameters()).dtype == torch.float32


def test_flash_attention_agrees_with_the_explicit_maths():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.manual_seed(0)
    model = GPT(tiny_model_config(context_length=64)).cuda().eval()
    idx = torch.randint(0, 20, (2, 64), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16), sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        fused, _ = model(idx)
    model.set_fused_attention(False)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        explicit, _ = model(idx)
    assert torch.allclose(fused.float(), explicit.float(), atol=5e-2)


def test_cached_generation_matches_full_forward_on_gpu():
    torch.manual_seed(0)
    model = GPT(tiny_model_config()).cuda().eval()
    decoder = CachedDecoder(model, 2)
    with torch.no_grad():
        logits = decoder.prefill(torch.randint(0, 20, (2, 3), device="cuda"))
        for _ in range(40):
            full, _ = model(decoder.tokens())
            assert torch.allclose(logits, full[:, -1], atol=1e-4)
            logits = decoder.step(logits.argmax(-1, keepdim=True))


def test_fast_decoder_matches_full_forward_on_gpu():
    """The batch-1 fast path on CUDA: one column block (threads are a CPU matter), fp32 products."""
    torch.manual_seed(0)
    model = GPT(tiny_model_config()).cuda().eval()
    decoder = FastDecoder(model)
    assert decoder.parts == 1
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # full fp32, as on the CPU
    try:
        with torch.no_grad():
            logits = decoder.prefill(torch.randint(0, 20, (1, 3), device="cuda"))
            for _ in range(40):  # past the context of 16: the window slides
                full, _ = model(decoder.tokens())
                assert torch.allclose(logits, full[:, -1], atol=1e-4)
                logits = decoder.step(logits.argmax(-1, keepdim=True))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
