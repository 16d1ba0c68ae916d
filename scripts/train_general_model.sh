#!/usr/bin/env bash
# Fine-tune the general model (trained_piDOC/general/) from the reproduction's weights on the Milky
# Way preset's data (data/general, `python3 make_mock_clusters.py --preset milky-way --output-directory
# data/general`), CNN first, then the CED, each within a wall-time budget. Started again, each network
# continues from its last saved epoch in runs/general/<network>/ (train_piDOC.py resumes by itself).
#
# Standardisation: the warm-start weights expect inputs standardised with the reproduction's
# constants, so the general model keeps them (input_files/standardization_files, copied by the
# trainer into trained_piDOC/general/standardization_files/). Recomputing them from the general
# split would shift every input the pretrained filters see and undo the warm start.
#
# On a GPU: KERAS_BACKEND=jax bash scripts/train_general_model.sh 10 60 float32 "" (no map subset,
# float32) continues the same runs for as long as allowed.
#
# Usage: bash scripts/train_general_model.sh [CNN_MINUTES] [CED_MINUTES] [CED_PRECISION] [CED_MAPS]
set -euo pipefail
cd "$(dirname "$0")/.."
cnn_minutes=${1:-25}
ced_minutes=${2:-45}
ced_precision=${3:-mixed_bfloat16}
ced_maps=${4-10000}
export PYTHONUNBUFFERED=1
common=(--data-directory data/general --output-directory trained_piDOC/general --runs-directory runs/general
        --initial-weights-directory trained_piDOC --standardization-directory input_files/standardization_files)

# The CNN is cheap (~70 maps/s on 2 CPU cores) and is where distance and age fail on massive clusters.
nice -n 5 python3 train_piDOC.py "${common[@]}" --networks cnn --epochs 100 --learning-rate 3e-4 \
    --plateau-patience 3 --max-minutes "$cnn_minutes"
# The CED runs ~14 maps/s in mixed_bfloat16 on this CPU (8 in float32; benchmarks/training_throughput.py);
# a fixed random subset of the training maps keeps an epoch, and so a checkpoint, within ~15 minutes.
nice -n 5 python3 train_piDOC.py "${common[@]}" --networks ced --epochs 200 --learning-rate 2e-4 \
    --plateau-patience 3 --mixed-precision "$ced_precision" ${ced_maps:+--max-training-maps "$ced_maps"} \
    --max-minutes "$ced_minutes"
python3 -c "import train_piDOC; train_piDOC.plot_learning_curves(['runs/general/cnn/training_log.csv', 'runs/general/ced/training_log.csv'], 'trained_piDOC/general/learning_curves.png')" || true
