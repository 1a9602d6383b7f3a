#!/usr/bin/env bash
# One device call: fine-tune the shipped priors with more high-noise training, then measure them.
#
#   bash benchmarks/device_finetune.sh OUTDIR [TRAIN_SECONDS] [TOTAL_SECONDS]
#
# Starts from checkpoints/{mri,ct} (--init-from) and trains both concurrently on the one GPU (half of
# every batch random 128² crops of 256² images), exporting the EMA weights to OUTDIR/{mri,ct}.safetensors
# every 250 steps (a call cut short still returns weights). Then, with the GPU to itself and every step
# bounded by TOTAL_SECONDS from the start:
#   1. the transfer table (prior against TV as denoisers, held-out and real slices) of the shipped
#      networks (renamed mri-v1, ct-v1) and the fine-tuned ones, in the same run;
#   2. the coarse-to-fine switch of each fine-tuned network with the shipped coarse expert, written as
#      the pair manifests mri-pair / ct-pair;
#   3. benchmarks/priors.py on mri, ct, mri-pair, ct-pair at 128² (the denoising bar, the high-noise
#      table, samples and the figure), the settings of benchmarks/logs/priors-cpu-pair.txt.
# Manifests, logs and the figure come back in OUTDIR/logs.tar.gz (the device returns at most 8 files).
#
# Noise levels: ln σ ~ N(P_MEAN, P_STD²). EDM's (−1.2, 1.2) draws σ ∈ [1, 4] for 14 % of images and
# σ ≥ 5 for 1 %; (−0.4, 1.6) draws 27 % and 10.5 %, and keeps 5.2 % below σ = 0.05 (EDM: 6.7 %).
# Unconditional MRI samples get their inside at σ = 1–4 (session 7: the full network answers there and
# has not learnt brain structure), CT's denoiser is worse than the mean image from σ = 20 up.
# DEV=cpu with small times is the dry run of this script.
# Carry .devcarry and .devdata/mni152.npz. The tracked tree (77 MB in session 8) is over the device's 64 MiB:
# that session moved benchmarks/logs/*.npz and benchmarks/figures/quality_* aside (tar) for its calls.
set -u
OUT=${1:?usage: device_finetune.sh OUTDIR [TRAIN_SECONDS] [TOTAL_SECONDS]}
TRAIN_SECONDS=${2:-380}
TOTAL_SECONDS=${3:-540}
DEV=${DEV:-cuda}
BATCH=${BATCH:-128}
P_MEAN=${P_MEAN:--0.4}
P_STD=${P_STD:-1.6}
T0=$(date +%s)
left() { echo $(( TOTAL_SECONDS - ($(date +%s) - T0) )); }
bounded() { local cap=$1; shift; local l; l=$(left); [ "$l" -gt 5 ] || { echo "skipped (no time): $*"; return 0; }
            timeout $(( cap < l ? cap : l )) "$@"; }
L=/tmp/medrecon-ft/logs CK=/tmp/medrecon-ft/ck
mkdir -p "$OUT" "$L" "$CK"
exec > >(tee -a "$L/run.log") 2>&1
if ls .devcarry/whl/*.whl > /dev/null 2>&1; then   # pydicom: the transfer table's real slices
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .devcarry/whl/*.whl && export PYTHONPATH=/tmp/site
fi
if [ -d .devcarry/heldout ]; then mkdir -p .devdata/heldout && cp -n .devcarry/heldout/*.npz .devdata/heldout/; fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1
[ "$DEV" = cuda ] && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
AMP=off; [ "$DEV" = cuda ] && AMP=bf16
COMMON=(--anatomy .devdata/mni152.npz --patch 128 --batch "$BATCH" --crop-from 256 --crop-fraction 0.5
        --model-channels 32 --channel-mult 1,2,3,4 --num-blocks 1,2,2,2 --attn-levels 3 --lr 2e-4
        --warmup-steps 50 --p-mean "$P_MEAN" --p-std "$P_STD" --ema-halflife 10000 --steps 100000
        --time-limit "$TRAIN_SECONDS" --device "$DEV" --amp "$AMP" --checkpoint-every 100000 --export-every 250
        --log-every 50 --quiet)
echo "[$(( $(date +%s) - T0 )) s] training"
PIDS=()
for r in mri ct; do
    python3 -m medrecon.train --data $r-mixed --init-from checkpoints/$r.safetensors --out "$OUT/$r" \
        --run-dir /tmp/runs/$r --seed 12 "${COMMON[@]}" > "$L/train-$r.log" 2>&1 &
    PIDS+=($!)
done
wait "${PIDS[@]}"   # by pid: a bare wait also waits for the tee above
echo "[$(( $(date +%s) - T0 )) s] trained"; tail -n 3 "$L"/train-*.log
for r in mri ct; do
    cp /tmp/runs/$r/log.csv "$L/finetune-$r.csv" 2>/dev/null
    cp checkpoints/$r.safetensors "$CK/$r-v1.safetensors"; cp checkpoints/$r.json "$CK/$r-v1.json"
    cp checkpoints/$r-coarse.safetensors checkpoints/$r-coarse.json "$CK/"
    cp "$OUT/$r.safetensors" "$OUT/$r.json" "$CK/" && cp "$OUT/$r.json" "$L/"
done
export MEDRECON_CHECKPOINTS=$CK
# 1 and 2 share the GPU
bounded 70 python3 benchmarks/priors.py --transfer --priors mri-v1 mri ct-v1 ct --device "$DEV" --n 10 --size 128 \
    --anatomy .devdata/mni152.npz > "$L/priors-transfer.log" 2>&1 &
PIDS=($!)
for r in mri ct; do
    bounded 60 python3 benchmarks/priors.py --switch $r $r-coarse --device "$DEV" --n 16 \
        --anatomy .devdata/mni152.npz --write-pair $r-pair > "$L/switch-$r.log" 2>&1 &
    PIDS+=($!)
done
wait "${PIDS[@]}"
echo "[$(( $(date +%s) - T0 )) s] transfer and switch done"
cp "$CK"/*-pair.json "$L/" 2>/dev/null
bounded 90 python3 benchmarks/priors.py --priors mri ct mri-pair ct-pair --device "$DEV" --anatomy .devdata/mni152.npz \
    --size 128 --steps 32 --n 16 --samples 6 --figure "$L/prior_samples.png" > "$L/priors-bench.log" 2>&1
echo "[$(( $(date +%s) - T0 )) s] done"
tar -C "$(dirname "$L")" -czf "$OUT/logs.tar.gz" logs
ls -la "$OUT"
