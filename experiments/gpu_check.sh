#!/usr/bin/env bash
# One short pass over everything that needs a GPU: the CUDA tests (AMP fp16/bf16, channels_last,
# torch.compile, NCCL, resume of a CUDA checkpoint), then the GPU benchmark tables:
#     bash experiments/gpu_check.sh [OUT_DIR]        (under 10 min on one H100/H200)
# Every step runs under its own time limit and the script goes on past a failing one, so one bad step still
# leaves the others' numbers. Output: OUT_DIR/log.txt (everything) and one JSON per benchmark.
# QUICK=1 shrinks every benchmark to a shape check (DEVICE=cpu QUICK=1 checks this script without a GPU).
set -u
out=${1:-gpu_check}
device=${DEVICE:-cuda}
py=${PYTHON:-python3}
mkdir -p "$out"
log="$out/log.txt"
export PYTHONUNBUFFERED=1 WANDB_MODE=offline WANDB_SILENT=true
if [ "${QUICK:-0}" = 1 ]; then
    shift_args=(--quick) fast_args=(--batch-size 2 --img-size 64 --model shiftvit_light_tiny --repeats 1)
    tp_args=(--quick) compiled=(shiftvit_nano --no-train)
    overhead_args=(--model shiftvit_nano --data digits --batch-size 64 --epochs 1)
else
    shift_args=(--repeats 50) fast_args=(--repeats 10) tp_args=(--repeats 5 --steps 5)
    compiled=(shiftvit_r2_tiny swin_tiny_patch4_window7_224)
    overhead_args=(--model shiftvit_micro --data relations --batch-size 512 --epochs 3)
fi

step() {  # step NAME LIMIT_S COMMAND...: append the output to the log, note the exit status, carry on
    local name=$1 limit=$2 start=$SECONDS rc
    shift 2
    echo "=== $name: $*" >>"$log"
    timeout "$limit" "$@" >>"$log" 2>&1
    rc=$?
    echo "=== $name rc=$rc $((SECONDS - start))s" | tee -a "$log"
}

step env 60 bash -c "nvidia-smi || true; $py -c 'import torch, timm, hydra; print(torch.__version__, timm.__version__, \
hydra.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))'"
if [ "$device" = cuda ]; then
    step tests 300 "$py" -m pytest -v --durations=0 -p no:cacheprovider tests/test_cuda.py
fi
step fast 60 "$py" -m shiftvit.bench fast --device "$device" "${fast_args[@]}" --out "$out/fast.json"
step shift 40 "$py" -m shiftvit.bench shift --device "$device" "${shift_args[@]}" --out "$out/shift.json"
step shift_channels_last 40 "$py" -m shiftvit.bench shift --device "$device" --channels-last "${shift_args[@]}" \
    --out "$out/shift_channels_last.json"
step throughput_fp32 160 "$py" -m shiftvit.bench throughput --device "$device" "${tp_args[@]}" \
    --out "$out/throughput_fp32.json"
step throughput_bf16_channels_last 140 "$py" -m shiftvit.bench throughput --device "$device" --amp bf16 \
    --channels-last "${tp_args[@]}" --out "$out/throughput_bf16_channels_last.json"
step throughput_compiled 200 "$py" -m shiftvit.bench throughput "${compiled[@]}" \
    --device "$device" --amp bf16 --channels-last --compile "${tp_args[@]}" --out "$out/throughput_compiled.json"
# a 32-px ablation job on the GPU: run.py (tensor data served on the device) against a bare loop, same batch
step overhead_relations 180 "$py" -m shiftvit.bench overhead --device "$device" "${overhead_args[@]}" \
    --out "$out/overhead_relations.json"
grep -h "^=== .* rc=" "$log" | grep -v " rc=0 " && exit 1
exit 0
