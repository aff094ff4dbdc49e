"""--compile: each block compiled in place for the training step, and a clean fallback without a C++ compiler."""

import pytest
import torch

from minilab.checkpoint import load_checkpoint
from minilab.training.setup import compiler_missing
from minilab.training.trainer import Trainer
from tests.conftest import tiny_model_config, tiny_train_config


def _fit(tmp_path, **overrides):
    lines = []
    cfg = tiny_train_config(tmp_path, epochs=1, steps_per_epoch=3, sample_length=5, **overrides)
    trainer = Trainer(cfg, tiny_model_config(context_length=32), log=lines.append, progress=False)
    return trainer, trainer.fit(), lines


def test_without_a_cpp_compiler_compile_trains_uncompiled_and_says_why(tmp_path, monkeypatch):
    import torch._inductor.cpp_builder as builder

    def no_compiler():
        raise builder.exc.InvalidCxxCompiler()  # what inductor raises when neither $CXX nor g++ runs

    monkeypatch.setattr(builder, "get_cpp_compiler", no_compiler)
    assert "C++ compiler" in compiler_missing(torch.device("cpu"))
    assert compiler_missing(torch.device("cuda")) is None  # a GPU's kernels need no C++ compiler
    trainer, result, lines = _fit(tmp_path, compile=True)
    assert not trainer.wrapped.compiled and result.steps == 3
    assert "note: --compile needs a C++ compiler (none found: install g++ or set CXX); training uncompiled" in lines


@pytest.mark.slow
def test_compiled_blocks_train_like_eager_ones_and_save_plain_weights(tmp_path):
    if compiler_missing(torch.device("cpu")):
        pytest.skip("no C++ compiler for torch.compile on this machine")
    eager, eager_result, _ = _fit(tmp_path / "eager")
    compiled, compiled_result, lines = _fit(tmp_path / "compiled", compile=True)
    assert compiled.wrapped.compiled and not any("--compile needs" in line for line in lines)
    assert compiled_result.final_train_loss == pytest.approx(eager_result.final_train_loss, abs=1e-3)
    assert compiled_result.final_val_loss == pytest.approx(eager_result.final_val_loss, abs=1e-3)
    ckpt = load_checkpoint(tmp_path / "compiled" / "checkpoints" / "checkpoint.pt")
    assert ckpt["model_state"].keys() == eager.model.state_dict().keys()  # no '_orig_mod.' in the names
    assert ckpt["train_args"]["compile"] is True
