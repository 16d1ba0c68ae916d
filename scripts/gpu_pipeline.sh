#!/usr/bin/env bash
# The full-scale run behind the committed weights, as executed on a lent GPU machine (16 cores, one
# NVIDIA H100, JAX; no TensorFlow there): generate the training and validation splits with every
# core, then train the CNN and the CED under KERAS_BACKEND=jax within a wall-time budget.
# Every stage resumes: started again, the generator skips finished clusters and the trainer
# continues from its last saved epoch. The results (exported networks, logs, training states) are
# packed into OUT_DIRECTORY.
#
# Usage: bash scripts/gpu_pipeline.sh OUT_DIRECTORY BUDGET_MINUTES [CED_EPOCHS] [CNN_EPOCHS] [CNN_MINUTES] [BATCH_SIZE]
set -euo pipefail
out=${1:?output folder}
budget_minutes=${2:?wall-time budget in minutes}
ced_epochs=${3:-200}
cnn_epochs=${4:-100}
cnn_minutes=${5:-3}
batch_size=${6:-64}
start_seconds=$(date +%s)
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1

minutes_left() { echo "$budget_minutes $start_seconds $(date +%s)" | awk '{printf "%.2f", $1 - ($3 - $2) / 60}'; }

python3 make_mock_clusters.py --workers "$(nproc)" --splits train validation
python3 train_piDOC.py --networks cnn --epochs "$cnn_epochs" --batch-size "$batch_size" --plateau-patience 8 \
    --max-minutes "$(echo "$(minutes_left) $cnn_minutes" | awk '{printf "%.2f", ($1 < $2) ? $1 : $2}')"
# The CED gets what is left, minus a minute for packing the results.
python3 train_piDOC.py --networks ced --epochs "$ced_epochs" --batch-size "$batch_size" --plateau-patience 6 \
    --max-minutes "$(echo "$(minutes_left)" | awk '{printf "%.2f", $1 - 1.0}')"

mkdir -p "$out"
tar -czf "$out/results.tar.gz" trained_piDOC runs/*/training_log.csv runs/*/*.json data/standardization_files
# The training states (model + optimiser) travel back in pieces under 16 MiB each.
for network in ced cnn; do
    tar -cf - runs/$network | split -b 15m - "$out/state_$network.tar.part-"
done
ls -la "$out"
