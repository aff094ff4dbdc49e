#!/usr/bin/env bash
# The ablation of docs/experiments.md: the classic architecture, each switch on its own, and all the
# modern ones together, each trained for the same wall-clock budget on tinyshakespeare, one after
# the other, then compared. Usage: benchmarks/ablation.sh DATA OUT_DIR [SECONDS]
# The base recipe is benchmarks/ablation_base.json: the shakespeare-cpu preset as it was for that
# ablation (a classic 0.8M model, lr 3e-3); the preset itself is now the speedrun recipe (docs/speedrun.md).
set -euo pipefail
DATA=${1:?usage: ablation.sh DATA OUT_DIR [SECONDS]}
OUT=${2:?usage: ablation.sh DATA OUT_DIR [SECONDS]}
BUDGET=${3:-75}
LAB="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$LAB/.venv/bin/python}"
# One thread per run: on a small shared CPU a second thread mostly waits (see tests/conftest.py).
export OMP_NUM_THREADS=1
run() {
    local name=$1
    shift
    "$PY" "$LAB/mini-transformer-lab.py" train --data "$DATA" --config "$LAB/benchmarks/ablation_base.json" --time_budget "$BUDGET" \
        --sample_length 0 --device cpu --out_dir "$OUT/checkpoints/$name" --experiments_dir "$OUT/runs" \
        --run_name "$name" "$@" > "$OUT/$name.log" 2>&1
    tail -n 2 "$OUT/$name.log" | head -n 1
}
mkdir -p "$OUT"
(cd "$LAB/benchmarks" && "$PY" -c 'from machine import describe; print(describe("cpu", "auto (per run: config.json)"))')
run classic
run learned --pos_encoding learned
run rope --pos_encoding rope
run nopos --pos_encoding none
run rmsnorm --norm rmsnorm
run qk_norm --qk_norm
run relu2 --mlp relu2
run swiglu --mlp swiglu
run no_bias --no_bias
run untied --no_tie_embeddings
run softcap --logit_softcap 30
run muon --optimizer muon
run wsd --schedule wsd
run modern --pos_encoding rope --norm rmsnorm --qk_norm --mlp relu2 --optimizer muon
"$PY" "$LAB/mini-transformer-lab.py" compare "$OUT"/runs/* --out "$OUT/ablation.png"
