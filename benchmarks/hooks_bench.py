"""Do unused hook points cost anything? This tree's model against the model of a git ref, side by side.

    python benchmarks/hooks_bench.py [--ref b5e5c23] [--train_reps 20] [--tokens 400] [--threads 1]

The model files (minilab/model/gpt.py and layers.py) of ``--ref`` (default: the commit before hooks)
are loaded next to this tree's, both get the same weights, and the two are called in alternation,
one training step or one generated token at a time, so a busy machine slows both alike: a training
step (forward, backward, AdamW) at the seed configuration, and one token of cached generation
(CachedDecoder: FastDecoder has no hooks) at batch 1 and 8. Prints the median time of each and the
ratio this tree / ref (1.00 = no cost).
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


def train_step(model, opt, batch: torch.Tensor) -> None:
    _, loss = model(batch[:, :-1], batch[:, 1:].contiguous())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def paired(fa, fb, reps: int) -> tuple[float, float]:
    """Median seconds of fa() and of fb(), called in alternation (the order flips every rep)."""
    ta, tb = [], []
    for r in range(reps):
        for f, times in [(fa, ta), (fb, tb)][:: 1 if r % 2 else -1]:
            t = time.perf_counter()
            f()
            times.append(time.perf_counter() - t)
    return statistics.median(ta), statistics.median(tb)


def decode_step(model, batch: int):
    """A function that decodes one more token each call (a CachedDecoder, restarted before it is full)."""
    state = {}

    @torch.no_grad()
    def step():
        if not state or state["n"] >= model.cfg.context_length - 17:
            state["dec"] = CachedDecoder(model, batch)
            idx = torch.randint(0, model.cfg.vocab_size, (batch, 16), generator=torch.Generator().manual_seed(0))
            state["logits"], state["n"] = state["dec"].prefill(idx), 0
        state["logits"] = state["dec"].step(state["logits"].argmax(-1, keepdim=True))
        state["n"] += 1

    step()  # the first call prefills; time only the steps after it
    return step


def cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="b5e5c23", help="git ref whose model has no hooks (default b5e5c23)")
    parser.add_argument("--train_reps", type=int, default=20, help="training steps per model (default 20)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=400, help="generated tokens per model (default 400)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = ModelConfig()  # the seed's model: 4 layers, 256 wide, 256 context
    with tempfile.TemporaryDirectory() as tmp:
        RefGPT = model_class_at(args.ref, Path(tmp))
        torch.manual_seed(0)
        weights = GPT(cfg).state_dict()
        # Every model is built and then loaded the same way: a model that initialised its own weights
        # measured up to 2x slower than a loaded copy of it (memory placement), which would swamp the answer.
        ours, ref, twin = GPT(cfg), RefGPT(cfg), GPT(cfg)
        for m in (ours, ref, twin):
            m.load_state_dict(weights)
        ours.train(), ref.train()
        opts = [torch.optim.AdamW(m.parameters(), lr=1e-4) for m in (ours, ref)]
        batch = torch.randint(
            0, cfg.vocab_size, (8, cfg.context_length + 1), generator=torch.Generator().manual_seed(1)
        )
        rows = {
            "train step, batch 8 x 256": paired(
                lambda: train_step(ours, opts[0], batch), lambda: train_step(ref, opts[1], batch), args.train_reps
            )
        }
        ours.eval(), ref.eval()
        twin.eval()
        for b in (1, 8):
            rows[f"one generated token, batch {b}"] = paired(decode_step(ours, b), decode_step(ref, b), args.tokens)
        # The noise floor: this tree's model against an identical copy of itself.
        rows["same, batch 1, against itself"] = paired(decode_step(ours, 1), decode_step(twin, 1), args.tokens)
    print(
        f"{cpu_name()}, torch {torch.__version__}, {args.threads} thread(s), medians of calls alternating "
        f"between the two models"
    )
    # What the hook points add, counted directly: one unused call each, timed a million times.
    point, x = next(iter(ours.hook_points().values())), torch.zeros(1)
    t = time.perf_counter()
    for _ in range(1_000_000):
        point(x)
    per_call = (time.perf_counter() - t) / 1_000_000
    n = len(ours.hook_points())
    print(
        f"{n} hook points per forward pass, {1e9 * per_call:.0f} ns per unused call: "
        f"{1e6 * n * per_call:.1f} us per pass"
    )
    print(f"{'':32}{'hooks (this tree)':>20}{'no hooks (' + args.ref + ')':>22}{'ratio':>8}")
    for label, (ma, mb) in rows.items():
        print(f"{label:32}{1000 * ma:>17.2f} ms{1000 * mb:>19.2f} ms{ma / mb:>8.3f}")


if __name__ == "__main__":
    main()
