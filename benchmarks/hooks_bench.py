"""Do unused hook points cost anything? This tree's model against the model of a git ref, side by side.

    python benchmarks/hooks_bench.py [--ref b5e5c23] [--rounds 9] [--threads 1]

The model files (minilab/model/gpt.py and layers.py) of ``--ref`` (default: the commit before hooks)
are loaded next to this tree's, both get the same weights, and the two are timed in alternation,
round after round, so a busy machine slows both alike: a training step (forward, backward, AdamW) at
the seed configuration, and cached generation (CachedDecoder: FastDecoder has no hooks) at batch 1
and 8. Prints the median time of each and the ratio this tree / ref (1.00 = no cost).
"""

import argparse
import importlib.util
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from minilab.generation.decode import CachedDecoder
from minilab.model.config import ModelConfig
from minilab.model.gpt import GPT

ROOT = Path(__file__).resolve().parents[1]


def model_class_at(ref: str, folder: Path):
    """The GPT class as it was at git ``ref``, imported from its own copies of gpt.py and layers.py."""
    show = lambda name: subprocess.check_output(["git", "-C", str(ROOT), "show", f"{ref}:minilab/model/{name}"])  # noqa: E731
    (folder / "ref_layers.py").write_bytes(show("layers.py"))
    gpt = show("gpt.py").decode().replace("from minilab.model.layers import", "from ref_layers import")
    (folder / "ref_gpt.py").write_text(gpt)
    sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location("ref_gpt", folder / "ref_gpt.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.GPT


def train_step_s(model, opt, batch: torch.Tensor) -> float:
    t = time.perf_counter()
    _, loss = model(batch[:, :-1], batch[:, 1:].contiguous())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return time.perf_counter() - t


@torch.no_grad()
def generate_s(model, batch: int, new_tokens: int) -> float:
    decoder = CachedDecoder(model, batch)
    idx = torch.randint(0, model.cfg.vocab_size, (batch, 16), generator=torch.Generator().manual_seed(0))
    t = time.perf_counter()
    logits = decoder.prefill(idx)
    for _ in range(new_tokens):
        logits = decoder.step(logits.argmax(-1, keepdim=True))
    return time.perf_counter() - t


def cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="b5e5c23", help="git ref whose model has no hooks (default b5e5c23)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--new_tokens", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = ModelConfig()  # the seed's model: 4 layers, 256 wide, 256 context
    with tempfile.TemporaryDirectory() as tmp:
        RefGPT = model_class_at(args.ref, Path(tmp))
        torch.manual_seed(0)
        ours, ref = GPT(cfg), RefGPT(cfg)
        ref.load_state_dict(ours.state_dict())
        models = {"hooks (this tree)": ours, f"no hooks ({args.ref})": ref}
        opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in models.items()}
        batch = torch.randint(
            0, cfg.vocab_size, (8, cfg.context_length + 1), generator=torch.Generator().manual_seed(1)
        )
        times = {(k, task): [] for k in models for task in ("train", "gen1", "gen8")}
        for r in range(args.rounds + 1):  # round 0 warms up and is not counted
            order = list(models.items()) if r % 2 else list(models.items())[::-1]
            for name, m in order:
                m.train()
                t = train_step_s(m, opts[name], batch)
                m.eval()
                g1, g8 = generate_s(m, 1, args.new_tokens), generate_s(m, 8, args.new_tokens)
                if r:
                    times[(name, "train")].append(t), times[(name, "gen1")].append(g1), times[(name, "gen8")].append(g8)
    print(
        f"{cpu_name()}, torch {torch.__version__}, {args.threads} thread(s), {args.rounds} alternating rounds, medians"
    )
    a, b = list(models)
    labels = {
        "train": "train step, batch 8 x 256",
        "gen1": f"generate {args.new_tokens} tokens, batch 1",
        "gen8": f"generate {args.new_tokens} tokens, batch 8",
    }
    print(f"{'':32}{a:>20}{b:>22}{'ratio':>8}")
    for task, label in labels.items():
        ma, mb = statistics.median(times[(a, task)]), statistics.median(times[(b, task)])
        print(f"{label:32}{1000 * ma:>17.1f} ms{1000 * mb:>19.1f} ms{ma / mb:>8.3f}")


if __name__ == "__main__":
    main()
