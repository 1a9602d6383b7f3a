#!/usr/bin/env bash
# One call on a lent GPU machine (H100/H200): train the shipped priors, then time the GPU paths.
#
#   bash benchmarks/device_session.sh OUTDIR [TRAIN_SECONDS]
#
# The two priors train concurrently on the one GPU (each process is far from saturating an H100
# at this network size), each stopping cleanly at TRAIN_SECONDS and exporting its EMA weights.
# Then, with the GPU to itself: the priors' quality table and sample figure, the kernel benchmark.
# Needs: torch, triton, safetensors, tqdm, matplotlib on the machine; the MNI152 anatomy exported
# here beforehand by `python data_scripts/export_anatomy.py` into .devdata/mni152.npz.
set -u
OUT=${1:?usage: device_session.sh OUTDIR [TRAIN_SECONDS]}
TRAIN_SECONDS=${2:-360}
mkdir -p "$OUT/logs"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/logs/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/logs/gpu.txt"

COMMON=(--anatomy .devdata/mni152.npz --patch 128 --batch 64 --model-channels 32 --channel-mult 1,2,3,4
        --num-blocks 1,2,2,2 --attn-levels 3 --lr 3e-4 --warmup-steps 200 --ema-halflife 10000 --steps 100000 --time-limit "$TRAIN_SECONDS" --device cuda --amp bf16
        --checkpoint-every 1000 --export-every 500 --log-every 100 --quiet)
python3 -m medrecon.train --data mri-mixed --out "$OUT/mri" --run-dir /tmp/runs/mri --seed 1 "${COMMON[@]}" \
    > "$OUT/logs/train-mri.log" 2>&1 &
P1=$!
python3 -m medrecon.train --data ct-mixed --out "$OUT/ct" --run-dir /tmp/runs/ct --seed 2 "${COMMON[@]}" \
    > "$OUT/logs/train-ct.log" 2>&1 &
P2=$!
wait $P1; echo "mri training exit $?" | tee -a "$OUT/logs/gpu.txt"
wait $P2; echo "ct training exit $?" | tee -a "$OUT/logs/gpu.txt"
for r in mri ct; do cp /tmp/runs/$r/log.csv "$OUT/logs/$r-log.csv" 2>/dev/null; done   # optimizer state stays there

MEDRECON_CHECKPOINTS="$OUT" timeout 40 python3 benchmarks/network_speed.py --size 320 --device cuda \
    > "$OUT/logs/network-speed.log" 2>&1

MEDRECON_CHECKPOINTS="$OUT" timeout 60 python3 benchmarks/priors.py --device cuda --anatomy .devdata/mni152.npz --size 256 --steps 64 --n 32 \
    --figure "$OUT/logs/prior_samples.png" > "$OUT/logs/priors-bench.log" 2>&1
timeout 120 python3 benchmarks/gpu.py --out "$OUT/logs/RESULTS-gpu.md" > "$OUT/logs/gpu-bench.log" 2>&1
echo "gpu bench exit $?" >> "$OUT/logs/gpu.txt"
tar -C "$OUT" -czf "$OUT/logs.tar.gz" logs && rm -rf "$OUT/logs"
ls -la "$OUT"
