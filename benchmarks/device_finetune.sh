#!/usr/bin/env bash
# Second device call: fine-tune the shipped priors on patch crops (--crop-from), then measure.
#
#   bash benchmarks/device_finetune.sh OUTDIR [TRAIN_SECONDS] [QUALITY_SECONDS]
#
# Starts from checkpoints/{mri,ct} (--init-from), trains both concurrently on the one GPU with half
# of every batch made of random 128² crops of 256² generated images, exports the EMA weights, prints
# the priors' quality and transfer tables, then runs the GPU plan of benchmarks/quality.py (official settings).
#
# Noise levels: ln σ ~ N(P_MEAN, P_STD²). EDM's (−1.2, 1.2) draws σ ≥ 5 for 0.96 % of images and σ ≥ 20
# for 0.02 %: the shipped priors (≈ 190k images) saw about 1,800 and 40 such draws, and their
# denoisers are worse than the mean image there (CT from σ = 5–10, MRI at σ = 80;
# benchmarks/logs/priors-cpu-high-sigma.txt), so unconditional samples get their layout from noise.
# (−0.4, 1.6) draws σ ≥ 5 for 10.5 %, σ ≥ 20 for 1.7 %, and keeps 5.2 % below σ = 0.05 (EDM: 6.7 %).
set -u
OUT=${1:?usage: device_finetune.sh OUTDIR [TRAIN_SECONDS] [QUALITY_SECONDS]}
TRAIN_SECONDS=${2:-170}
QUALITY_SECONDS=${3:-100}
P_MEAN=${P_MEAN:--0.4}
P_STD=${P_STD:-1.6}
mkdir -p "$OUT/logs"
# the benchmark's held-out slices, carried like device_check.sh does (else they are regenerated on the CPU)
if [ -d .devcarry/heldout ]; then mkdir -p .devdata/heldout && cp --update=none .devcarry/heldout/*.npz .devdata/heldout/; fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$OUT/logs/gpu.txt"
COMMON=(--anatomy .devdata/mni152.npz --patch 128 --batch 64 --crop-from 256 --crop-fraction 0.5
        --model-channels 32 --channel-mult 1,2,3,4 --num-blocks 1,2,2,2 --attn-levels 3 --lr 2e-4
        --warmup-steps 50 --p-mean "$P_MEAN" --p-std "$P_STD" --ema-halflife 10000 --steps 100000 --time-limit "$TRAIN_SECONDS" --device cuda
        --amp bf16 --checkpoint-every 1000 --export-every 250 --log-every 50 --quiet)
for r in mri ct; do
    python3 -m medrecon.train --data $r-mixed --init-from checkpoints/$r.safetensors --out "$OUT/$r" \
        --run-dir /tmp/runs/$r --seed 11 "${COMMON[@]}" > "$OUT/logs/train-$r.log" 2>&1 &
done
wait
# the pairs mri-pair / ct-pair (medrecon.priors.CoarseToFine): keep the coarse experts, measure the
# switch for the new networks and write the pair manifests beside them
for r in mri ct; do
    cp /tmp/runs/$r/log.csv "$OUT/logs/finetune-$r.csv" 2>/dev/null
    cp checkpoints/$r-coarse.safetensors checkpoints/$r-coarse.json "$OUT/"
    MEDRECON_CHECKPOINTS="$OUT" timeout 30 python3 benchmarks/priors.py --switch $r $r-coarse --device cuda \
        --n 16 --anatomy .devdata/mni152.npz --write-pair $r-pair > "$OUT/logs/switch-$r.log" 2>&1
done
MEDRECON_CHECKPOINTS="$OUT" timeout 50 python3 benchmarks/priors.py --priors mri ct mri-pair ct-pair --device cuda --anatomy .devdata/mni152.npz \
    --size 256 --steps 64 --n 32 --figure "$OUT/logs/prior_samples.png" > "$OUT/logs/priors-bench.log" 2>&1
# does the fine-tune transfer? the prior against TV on the benchmark's held-out and real slices (CPU baseline:
# benchmarks/logs/priors-cpu-transfer.txt, lead over TV held-out / real: 4.1-4.4 / 1.3-1.4 dB MRI, 5.8-6.8 / 0.25-0.43 dB CT)
MEDRECON_CHECKPOINTS="$OUT" timeout 40 python3 benchmarks/priors.py --transfer --device cuda --n 10 --size 128 \
    --anatomy .devdata/mni152.npz > "$OUT/logs/priors-transfer.log" 2>&1
tar -C "$OUT" -czf "$OUT/logs.tar.gz" logs && rm -rf "$OUT/logs"   # before the last step: a timeout keeps them
if [ -f benchmarks/quality.py ]; then
    MEDRECON_CHECKPOINTS="$OUT" timeout "$QUALITY_SECONDS" python3 benchmarks/quality.py --gpu-plan --device cuda \
        --budget-s $((QUALITY_SECONDS - 20)) --anatomy .devdata/mni152.npz --json "$OUT/quality-gpu.json" \
        --no-report > "$OUT/quality-gpu.log" 2>&1
fi
ls -la "$OUT"
