#!/usr/bin/env bash
# The lesson of docs/assistant.md, measured: a base model pretrained on sums as plain text, scored on
# held-out questions; then fine-tuned on conversations with and without the loss mask (same steps,
# same batches, same lr), over several seeds, each scored the same way.
# Usage: benchmarks/assistant_lesson.sh OUT_DIR [SEEDS] [BASE_CHECKPOINT]
#   SEEDS: a quoted list (default "1 2 3"); BASE_CHECKPOINT: skip pretraining and start from this base.
# One thread per run: on a small shared CPU a second thread mostly waits (see tests/conftest.py).
set -euo pipefail
OUT=${1:?usage: assistant_lesson.sh OUT_DIR [SEEDS] [BASE_CHECKPOINT]}
SEEDS=${2:-1 2 3}
BASE=${3:-}
LAB="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$LAB/.venv/bin/python}"
CLI=("$PY" "$LAB/mini-transformer-lab.py")
export OMP_NUM_THREADS=1
mkdir -p "$OUT"
"$PY" "$LAB/example_data/make_addition.py" --out "$OUT/data"
if [ -z "$BASE" ]; then
    "${CLI[@]}" train --data "$OUT/data/pretrain.txt" --context_length 32 --d_model 96 --n_heads 4 --n_layers 3 \
        --d_ff 384 --dropout 0 --pos_encoding rope --norm rmsnorm --lr 3e-3 --batch_size 32 --steps_per_epoch 200 \
        --epochs 6 --threads 1 --sample_length 0 --eval_tokens 4096 --device cpu \
        --out_dir "$OUT/base" --experiments_dir "$OUT/runs" --run_name base > "$OUT/base.log" 2>&1
    BASE="$OUT/base/best_model.pt"
fi
echo "base ($BASE): $("${CLI[@]}" score --checkpoint "$BASE" --data "$OUT/data/test.jsonl" --show 0 --device cpu)"
for seed in $SEEDS; do
    for mask in mask_loss no_mask_loss; do
        name="$mask-seed$seed"
        "${CLI[@]}" finetune --from "$BASE" --data "$OUT/data/train.jsonl" --"$mask" --seed "$seed" \
            --epochs 8 --steps_per_epoch 100 --batch_size 32 --lr 3e-3 --threads 1 --sample_length 0 --device cpu \
            --out_dir "$OUT/$name" --experiments_dir "$OUT/runs" --run_name "$name" > "$OUT/$name.log" 2>&1
        echo "$name: $("${CLI[@]}" score --checkpoint "$OUT/$name/best_model.pt" --data "$OUT/data/test.jsonl" \
            --show 0 --device cpu)"
    done
done
