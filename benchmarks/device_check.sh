#!/usr/bin/env bash
# One device call that measures what needs a GPU (issues 6 and 7), in ≤ 580 s:
#
#   bash benchmarks/device_check.sh OUTDIR
#
# 1. benchmarks/gpu.py: kernel correctness on the GPU, then CT/MRI kernel timings with every launch
#    the CT projector tunes over and the peers (torchtomo cuda/triton, deepinv) in the same run;
# 2. benchmarks/network_speed.py at 320²: per-evaluation times (eager, CUDA graphs fp32/bf16,
#    torch.compile + graphs), the kernel profile, and ddnm at 1000 NFE end to end per network mode;
# 3. benchmarks/quality.py at 128², n = 10: every sampler at its official and fast settings on the
#    three target tasks × {held-out, real}, the ≥ 1000-NFE samplers on the other tasks, and at 256²
#    the classical methods, ddnm and song2022 on the target tasks; nine processes share the GPU (s/slice of these runs is inflated by the sharing: say so when quoting),
#    networks replayed as fp32 CUDA graphs (the same arithmetic as eager).
#
# Carry `.devcarry` (wheels of pydicom, pywavelets, sigpy, torchtomo, deepinv, natsort, and the first
# 5 images of each 128² and 256² held-out set: the slices the CPU runs used). Results: OUTDIR/RESULTS-gpu.md,
# OUTDIR/network.md, OUTDIR/run.log, and OUTDIR/all.tgz (quality JSON/NPZ and logs, refreshed every 20 s
# so a cut-short call still returns what finished). DEV=cpu and BUDGET=… make a CPU dry run possible.
set -u
OUT=${1:?usage: device_check.sh OUTDIR}
DEV=${DEV:-cuda}
STAGES=${STAGES:-gpu,speed,quality}   # any of gpu, speed, quality (the first call's plan), followup (the second's),
                                      # remaining (what RESULTS.md lists as not run after session 4)
BUDGET=${BUDGET:-250}        # quality: seconds each process may start runs in
QTIMEOUT=${QTIMEOUT:-275}    # quality: hard stop per process
W=/tmp/medrecon-device
mkdir -p "$OUT" "$W/logs" "$W/q"
exec > >(tee -a "$OUT/run.log") 2>&1
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*"; }

if [ -d .devcarry/whl ] && ls .devcarry/whl/*.whl > /dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .devcarry/whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1
if [ -d .devcarry/heldout ]; then mkdir -p .devdata/heldout && cp --update=none .devcarry/heldout/*.npz .devdata/heldout/; fi
[ "$DEV" = cuda ] && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__)"
stamp "setup done"

# snapshots of the quality results (tar exits 1 when a file grows while read: the archive is still good)
( while true; do sleep 20; tar -C "$W" -czf "$OUT/all.tgz.part" logs q 2>/dev/null; [ $? -le 1 ] && mv "$OUT/all.tgz.part" "$OUT/all.tgz"; done ) &
SNAP=$!

if [ "$DEV" = cuda ] && [[ $STAGES == *gpu* ]]; then
    timeout 140 python3 benchmarks/gpu.py --out "$OUT/RESULTS-gpu.md" > "$W/logs/gpu.log" 2>&1
    stamp "gpu.py exit $?"
fi
if [ "$DEV" = cuda ] && [[ $STAGES == *speed* ]]; then
    timeout 130 python3 benchmarks/network_speed.py --prior mri --size 320 --compile --profile --end-to-end \
        --repeats 50 > "$OUT/network.md" 2>&1
    stamp "network_speed.py exit $?"
fi

Q=(--size 128 --n 10 --device "$DEV" --network graphs-fp32 --no-report --budget-s "$BUDGET")
PIDS=()
if [[ $STAGES == *followup* ]]; then  # the second call: the samplers the first call's CT/multi-coil processes never reached
    for t in ct-par-23 mri-mc-8x; do
        for d in heldout ood; do
            OMP_NUM_THREADS=2 timeout "$QTIMEOUT" python3 benchmarks/quality.py --tasks $t --data $d \
                --methods dps,pigdm,reddiff,ilvr,mcg,recguide,scoresde,song2022 --setting official "${Q[@]}" \
                --json "$W/q/gpu2-$t-$d.json" > "$W/logs/q2-$t-$d.log" 2>&1 &
            PIDS+=($!)
        done
    done
fi
if [[ $STAGES == *remaining* ]]; then  # the rows the CPU sessions could not afford (RESULTS.md: "Not run")
    for d in heldout ood; do
        for t in ct-par-23 mri-mc-8x; do
            OMP_NUM_THREADS=2 timeout "$QTIMEOUT" python3 benchmarks/quality.py --tasks $t --data $d \
                --methods dps,song2022,mcg,recguide,scoresde --setting official "${Q[@]}" \
                --json "$W/q/gpu3-$t-$d.json" > "$W/logs/q3-$t-$d.log" 2>&1 &
            PIDS+=($!)
        done
    done
    OMP_NUM_THREADS=2 timeout "$QTIMEOUT" python3 benchmarks/quality.py --tasks mri-sc-4x,mri-mc-8x,ct-par-23 \
        --data all --methods ddnm,dps --setting both --size 256 --n 10 --device "$DEV" --network graphs-fp32 \
        --no-report --budget-s "$BUDGET" --json "$W/q/gpu3-256.json" > "$W/logs/q3-256.log" 2>&1 &
    PIDS+=($!)
    OMP_NUM_THREADS=2 timeout "$QTIMEOUT" python3 benchmarks/quality.py --tasks mri-sc-8x,mri-mc-4x,ct-par-60,ct-fan-60 \
        --data all --methods ddnm,dps,dds --setting both "${Q[@]}" --json "$W/q/gpu3-other.json" \
        > "$W/logs/q3-other.log" 2>&1 &
    PIDS+=($!)
fi
if [[ $STAGES == *quality* ]]; then
M=song2022,dps,langevin,scoresde,mcg,recguide,pigdm,reddiff,ilvr
for t in mri-sc-4x mri-mc-8x ct-par-23; do
    for d in heldout ood; do
        m=$M; [ $t = mri-sc-4x ] && m=$M,snips,ddrm   # the SVD samplers: single-coil Cartesian MRI only
        OMP_NUM_THREADS=2 timeout "$QTIMEOUT" python3 benchmarks/quality.py --tasks $t --data $d --methods $m \
            --setting both "${Q[@]}" --json "$W/q/gpu-$t-$d.json" > "$W/logs/q-$t-$d.log" 2>&1 &
        PIDS+=($!)
    done
done
for group in mri-sc-8x,mri-mc-4x ct-par-60,ct-fan-60; do
    OMP_NUM_THREADS=2 timeout "$QTIMEOUT" python3 benchmarks/quality.py --tasks $group --data all \
        --methods song2022,dps,ddnm --setting official "${Q[@]}" --json "$W/q/gpu-${group//,/-}.json" \
        > "$W/logs/q-${group//,/-}.log" 2>&1 &
    PIDS+=($!)
done
Q256=(--size 256 --n 10 --device "$DEV" --network graphs-fp32 --no-report --budget-s "$BUDGET")
OMP_NUM_THREADS=2 timeout "$QTIMEOUT" python3 benchmarks/quality.py --tasks mri-mc-8x,mri-sc-4x,ct-par-23 --data all \
    --methods classical,ddnm,song2022 --setting official "${Q256[@]}" --json "$W/q/gpu-256.json" \
    > "$W/logs/q-256.log" 2>&1 &
PIDS+=($!)
fi
[ ${#PIDS[@]} -gt 0 ] && wait "${PIDS[@]}"
stamp "quality done"
kill $SNAP 2>/dev/null; wait $SNAP 2>/dev/null
tar -C "$W" -czf "$OUT/final.tgz.part" logs q; [ $? -le 1 ] && mv "$OUT/final.tgz.part" "$OUT/all.tgz"
tail -n 3 "$W"/logs/q*.log
stamp "all done"
ls -la "$OUT"
