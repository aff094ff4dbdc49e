#!/usr/bin/env bash
# Issue 14's figures in one go, for a quiet machine (nothing else running): the machine and its
# peaks, batch-1 decoding per strategy, training speed per --dtype side by side, and the speedrun
# at nanoGPT's wall clock (64 s on the Intel Xeon) and at 600 s. About 27 minutes; prints Markdown
# for docs/benchmarks.md and docs/speedrun.md. Usage: benchmarks/intel_check.sh [DATA] [OUT_DIR]
# Works on any CPU: the speedrun picks its budgets and targets by whether the CPU has bf16 units.
set -euo pipefail
LAB="$(cd "$(dirname "$0")/.." && pwd)"
DATA=${1:-$LAB/../shared/data/tinyshakespeare.txt}
OUT=${2:-$(mktemp -d /tmp/intel-check.XXXXXX)}
PY="${PYTHON:-$LAB/.venv/bin/python}"
mkdir -p "$OUT"
cd "$LAB"
step() { echo; echo "## $*"; echo; }
step "machine"
"$PY" benchmarks/machine.py --dtype fp32,bf16
step "generation, seed config, 2 threads, --dtype auto (targets on Intel: batch 1 >= 3,000 tok/s and >= 25x)"
"$PY" benchmarks/generate_bench.py --repeats 3
step "generation, seed config, 2 threads, --dtype fp32 (exact logits)"
"$PY" benchmarks/generate_bench.py --repeats 3 --dtype fp32 | sed -n '/^| prompt/,/^$/p'
step "training, seed config, --dtype fp32 vs auto side by side (target on Intel: auto >= 2.0x at dropout 0)"
"$PY" benchmarks/train_bench.py --dtype fp32,auto --dropout 0.0,0.1 --steps 10
step "training, the speedrun presets: auto must never be slower than fp32; bf16 shows what a lower width rule would give"
echo "| preset | dropout | compile | --dtype | runs in | ms/step | tokens/s | vs fp32 | GFLOP/s | MFU | first ms |"
echo "| --- | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for preset in tiny shakespeare-cpu shakespeare-bf16 shakespeare-cpu-long; do
    "$PY" benchmarks/train_bench.py --preset "$preset" --dtype fp32,auto,bf16 --dropout 0.0 --steps 30 |
        tail -n 3 | sed "s/^/| $preset /"
done
step "training, shakespeare-bf16 as its preset runs it (batch 64): eager against compiled, fp32 against auto"
"$PY" benchmarks/train_bench.py --preset shakespeare-bf16 --dtype fp32,auto --dropout 0.0 --steps 30 --compile
step "speedrun at nanoGPT's wall clock: shakespeare-bf16 (3 seeds); shakespeare-cpu in fp32 and in bf16 (1 seed each)"
"$PY" benchmarks/speedrun.py --data "$DATA" --budget 64 --repeats 3 --work "$OUT/sr64"
"$PY" benchmarks/speedrun.py --data "$DATA" --budget 64 --preset shakespeare-cpu --work "$OUT/sr64-fp32" | tail -n 6
"$PY" benchmarks/speedrun.py --data "$DATA" --budget 64 --preset shakespeare-cpu --work "$OUT/sr64-96bf16" \
    -- --dtype bf16 | tail -n 6
step "speedrun at 600 s (shakespeare-bf16-long on bf16 CPUs: 128 wide, context 128, compiled, dropout 0.1)"
"$PY" benchmarks/speedrun.py --data "$DATA" --budget 600 --work "$OUT/sr600"
echo
echo "runs kept in $OUT"
