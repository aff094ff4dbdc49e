"""Random argument lists: every outcome is a success or one clean error line, never a traceback."""

import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minilab.app.cli import main
from tests.conftest import EXAMPLE, TINY_MODEL_FLAGS

COMMANDS = ["train", "generate", "info", "eval", "export", "attention", "compare", "bogus", ""]
FLAGS = [
    "--data",
    "--epochs",
    "--batch_size",
    "--lr",
    "--dropout",
    "--d_model",
    "--n_heads",
    "--context_length",
    "--val_fraction",
    "--resume",
    "--device",
    "--out_dir",
    "--seed",
    "--checkpoint",
    "--prompt",
    "--temperature",
    "--top_k",
    "--top_p",
    "--max_new_tokens",
    "--num_samples",
    "--stop",
    "--out",
    "--pos_encoding",
    "--keep_last",
    "--save_every_steps",
    "--warmup_steps",
    "--grad_clip",
    "--interactive",
    "--prompt_file",
    "--tokenizer",
    "--vocab_size",
    "--vocab-size",
    "--batch-size",
    "--top-p",
    "--norm",
    "--mlp",
    "--qk_norm",
    "--no_bias",
    "--logit_softcap",
    "--optimizer",
    "--schedule",
    "--preset",
    "--config",
    "--layer",
    "--head",
    "--nope",
    "-x",
]
VALUES = [
    "0",
    "1",
    "-1",
    "2",
    "0.5",
    "1e309",
    "nan",
    "inf",
    "-0.0",
    "99999999999",
    "abc",
    "",
    " ",
    "ok.txt",
    "empty.txt",
    "adir",
    "missing.txt",
    "checkpoint.pt",
    "cpu",
    "cuda",
    "learned",
    "bpe",
    "char",
    "256",
    "300",
    "rope",
    "muon",
    "tiny",
    "x.png",
    "héllo",
    "\x00",
    "../x",
]
SAFE_TRAIN = [
    *TINY_MODEL_FLAGS,
    "--steps_per_epoch",
    "1",
    "--epochs",
    "1",
    "--sample_length",
    "0",
    "--device",
    "cpu",
    "--out_dir",
    "fuzz_ck",
    "--experiments_dir",
    "fuzz_exp",
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    shutil.copy(EXAMPLE, d / "ok.txt")
    (d / "empty.txt").write_bytes(b"")
    (d / "adir").mkdir()
    out = ["--out_dir", str(d), "--experiments_dir", str(d / "exp")]
    assert main(["train", "--data", str(d / "ok.txt"), *SAFE_TRAIN[:-4], *out]) == 0
    return d


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    command=st.sampled_from(COMMANDS),
    args=st.lists(st.one_of(st.sampled_from(FLAGS), st.sampled_from(VALUES)), max_size=8),
)
def test_random_arguments_end_cleanly(workdir, monkeypatch, capsys, command, args):
    monkeypatch.chdir(workdir)
    argv = ([command] if command else []) + args
    if command == "train":
        argv += SAFE_TRAIN  # last flag wins: keeps any run that does start tiny and quick
    if command == "generate":
        argv += ["--max_new_tokens", "3"]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own exit (usage errors, --help)
        code = e.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert code in (0, 1, 2, 130), (argv, code, err)
    if code != 0:
        assert len(err.strip().splitlines()) == 1, (argv, err)
