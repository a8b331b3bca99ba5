#!/usr/bin/env bash
# The GPU part of the pretraining study: does a larger encoder pay once it is pretrained (does the capacity study's
# answer change)? First the pretraining's cost per encoder size on the GPU (benchmarks.bench_pretrain), then the
# replay of patient D (8 seeds, mixed, 100 labels) with each size, without and with neighbour pretraining, every model
# trained and pretrained on the GPU (--model device=cuda); the sizes' replays run at the same time (JOBS worker
# processes each, one CPU thread per worker).
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
python=${PYTHON:-python3}
sizes=${SIZES:-width=16,depth=4 width=64,depth=8}
mkdir -p "$out"
for size in $sizes; do
    "$python" -m benchmarks.bench_pretrain --windowset "$windowset" --model "device=${DEVICE:-cuda},$size" \
        --out "$out/pretrain_gpu_${size//[=,]/_}.json"
done
pids=()
for size in $sizes; do
    "$python" -m benchmarks.replay --windowset "$windowset" --target-patient D --strategies mixed \
        --seeds "${SEEDS:-8}" --budget 100 --jobs "${JOBS:-8}" --pretrain --pretrain-objective neighbours \
        --model "device=${DEVICE:-cuda},$size" --references-from benchmarks/results/replay_budget100_D.json \
        --out "$out/replay_gpu_D_${size//[=,]/_}.json" > "$out/replay_gpu_D_${size//[=,]/_}.log" 2>&1 &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
