#!/usr/bin/env bash
# The GPU part of the pretraining study: does a larger encoder pay once it is pretrained (does the capacity study's
# answer change)? The replay of patient D (8 seeds, mixed, 100 labels) with the default model and a larger one, each
# without and with neighbour pretraining, every model trained and pretrained on the GPU (--model device=cuda).
#
#   bash benchmarks/gpu_study.sh WINDOWSET OUT_DIR
#
# WINDOWSET: D's synthetic window set as a replay of D caches it (benchmarks/_data/windowsets/
# synthetic_ABCD_373bef0436a4.npz, 47 MB; any machine makes it with a replay of D), so the GPU machine needs
# neither MNE nor the synthetic generator. PYTHON (python3), DEVICE (cuda), SEEDS (8), JOBS (8) and SIZES override
# the defaults; the references are those of benchmarks/results/replay_budget100_D.json (the same data). Compare the
# sizes with benchmarks.replay_compare FILE=+TAG.
set -euo pipefail
windowset=$1
out=$2
mkdir -p "$out"
for size in ${SIZES:-width=16,depth=4 width=64,depth=8}; do
    "${PYTHON:-python3}" -m benchmarks.replay --windowset "$windowset" --target-patient D --strategies mixed \
        --seeds "${SEEDS:-8}" --budget 100 --jobs "${JOBS:-8}" --pretrain --pretrain-objective neighbours \
        --model "device=${DEVICE:-cuda},$size" --references-from benchmarks/results/replay_budget100_D.json \
        --out "$out/replay_gpu_D_${size//[=,]/_}.json"
done
