#!/usr/bin/env bash
# One short pass over everything that needs a GPU: the GPU benchmark tables (the shift op, GroupNorm(1), Shift-T
# against its identity backbone, Swin-T and the official structure, compiled against eager, run.py against a
# bare loop on a 32-px ablation job, a profile of Shift-T's step, CIFAR's loaders against a small model's steps)
# and the CUDA tests (the quick ones after the cheap benchmarks, those that compile or run run.py last):
#     bash experiments/gpu_check.sh [OUT_DIR]        (BUDGET_S seconds in all, default 500, on one H100/H200)
# The steps run in order of what they settle, each under its own limit and never past the whole budget; the
# script goes on past a failing step, so one bad step still leaves the others' numbers. Output: OUT_DIR/log.txt
# (everything), one JSON per benchmark and targets.json (issue #16's targets, the log's last table, made even
# when the steps spent the budget).
# QUICK=1 shrinks every benchmark to a shape check (DEVICE=cpu QUICK=1 checks this script without a GPU).
set -u
out=${1:-gpu_check}
device=${DEVICE:-cuda}
py=${PYTHON:-python3}
budget=${BUDGET_S:-500}
mkdir -p "$out"
log="$out/log.txt"
export PYTHONUNBUFFERED=1 WANDB_MODE=offline WANDB_SILENT=true
# Shift-T and its peers: bf16 autocast + channels-last is how one trains them on a GPU
# (GroupNorm on the memory as stored, gn_as_stored: in run c02ec23 PyTorch's GroupNorm converted every
# channels-last tensor to NCHW, and the Triton GroupNorm was slower than that conversion)
shift_t=(shiftvit_r2_tiny shiftvit_r2_tiny+triton shiftvit_r2_tiny+auto shiftvit_r2_tiny+gn_as_stored
         shiftvit_r2_tiny+triton+gn_as_stored "shiftvit_r2_tiny[identity]" swin_tiny_patch4_window7_224)
if [ "${QUICK:-0}" = 1 ]; then
    # torch.compile's code generation takes minutes on a CPU: the dry run checks the steps' plumbing eagerly
    [ "$device" = cuda ] || export TORCH_COMPILE_DISABLE=1
    # the shift at its real shape (the targets table counts that shape only), once: a few seconds on a CPU
    shift_args=(--repeats 1) late_shift_args=(--quick) norm_args=(--quick)
    fast_args=(--model shiftvit_nano --batch-size 2 --img-size 32 --repeats 1)
    tp_args=(--quick) peers=(shiftvit_light_tiny shiftvit_light_tiny+triton+gn_as_stored "shiftvit_light_tiny[identity]")
    compiled=(shiftvit_light_tiny shiftvit_light_tiny+compiled_blocks) compiled_whole=(shiftvit_light_tiny
              shiftvit_light_tiny+compiled)
    overhead_args=(--model shiftvit_nano --data relations --data-arg num_train=128 --data-arg num_val=64
                   --batch-size 32 --epochs 1 --quick)
    loader_args=(--quick) profile_args=(--quick) profile_filled_args=(shiftvit_light_tiny --quick)
else
    shift_args=(--repeats 30) late_shift_args=(--repeats 30) norm_args=(--repeats 20 --compile)
    fast_args=(--repeats 10)
    tp_args=(--repeats 5 --steps 5) peers=("${shift_t[@]}")
    compiled=(shiftvit_r2_tiny shiftvit_r2_tiny+compiled_blocks) compiled_whole=(shiftvit_r2_tiny shiftvit_r2_tiny+compiled)
    # 40 steps an epoch at batch 512; the median of 5 epochs leaves the first (compilation) out
    overhead_args=(--model shiftvit_micro --data relations --data-arg num_train=20480 --batch-size 512 --epochs 5
                   --no-startup)
    loader_args=(--batch-size 512 --batches 20 --repeats 5)
    profile_args=(shiftvit_r2_tiny shiftvit_r2_tiny+gn_as_stored "shiftvit_r2_tiny[identity]" --steps 3)
    profile_filled_args=(shiftvit_r2_tiny --steps 3)
fi

step() {  # step NAME LIMIT_S COMMAND...: append the output to the log, note the exit status, carry on
    local name=$1 limit=$2 start=$SECONDS rc
    shift 2
    if [ -n "${STEPS:-}" ] && [[ " $STEPS targets " != *" $name "* ]]; then  # STEPS="a b": those (and the targets)
        return
    fi
    local left=$((budget - SECONDS))
    if [ "$left" -lt 15 ]; then
        echo "=== $name skipped: the budget (${budget}s) is spent" | tee -a "$log"
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "=== $name: $*" >>"$log"
    timeout "$limit" "$@" >>"$log" 2>&1
    rc=$?
    echo "=== $name rc=$rc $((SECONDS - start))s" | tee -a "$log"
}

step env 30 bash -c "nvidia-smi || true; $py -c 'import torch, timm, hydra; print(torch.__version__, timm.__version__, \
hydra.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))'"
for layout in nchw channels_last; do
    for dtype in float32 bfloat16; do
        flag=() && [ "$layout" = channels_last ] && flag=(--channels-last)
        step "shift_${layout}_$dtype" 30 "$py" -m shiftvit.bench shift --device "$device" "${flag[@]}" --dtype "$dtype" \
            "${shift_args[@]}" --out "$out/shift_${layout}_$dtype.json"
    done
done
step throughput_bf16_channels_last 90 "$py" -m shiftvit.bench throughput "${peers[@]}" --device "$device" \
    --amp bf16 --channels-last "${tp_args[@]}" --out "$out/throughput_bf16_channels_last.json"
step fast_fp32 45 "$py" -m shiftvit.bench fast --device "$device" "${fast_args[@]}" --out "$out/fast_fp32.json"
step fast_bf16 45 "$py" -m shiftvit.bench fast --device "$device" --amp bf16 "${fast_args[@]}" \
    --out "$out/fast_bf16.json"
# the cheap steps that settle a target or a default first, the compilations (minutes each) after them:
# GroupNorm(1)'s kernels, the default norm kernel's question
step norm 90 "$py" -m shiftvit.bench norm --device "$device" "${norm_args[@]}" --out "$out/norm.json"
# the quick CUDA tests (the Triton kernels against their definitions on the device: what the numbers above assume)
# before the slow steps, which spent the budget in an earlier run and left them unrun
slow="compile or run_py or resume or torchrun"
if [ "$device" = cuda ]; then
    step tests 120 "$py" -m pytest -q --durations=5 -p no:cacheprovider tests/test_cuda.py -k "not ($slow)"
fi
# a 32-px ablation job: run.py's engine (in the bare loop's process, epochs in turn) and run.py (its own process)
# against a bare loop, tensor data served on the device, same batch; eager, then compiled with CUDA graphs (static
# shapes: every batch is full)
step overhead_eager 90 "$py" -m shiftvit.bench overhead --device "$device" "${overhead_args[@]}" \
    --out "$out/overhead_eager.json"
# Shift-T compiled and eager in one process, rounds interleaved; training only. Block by block
# (train.compile_scope=blocks): one graph per stage; compiling the whole of Shift-T (38 blocks) in one graph took
# more than two minutes on an H200, and comes last
# (each compiling step starts with empty Inductor and Triton caches: a fresh machine's time to compile).
# With CUDA graphs (reduce-overhead): eager Shift-T's step is bound by the host's launches (38 blocks), and in
# run c02ec23 the blocks compiled in the default mode, still one launch each, trained at 0.95x eager
cold() { local d; d=$(mktemp -d) && echo env TORCHINDUCTOR_CACHE_DIR="$d/inductor" TRITON_CACHE_DIR="$d/triton"; }
compile_mode=reduce-overhead && [ "$device" = cuda ] || compile_mode=default
step throughput_compiled 240 $(cold) "$py" -m shiftvit.bench throughput "${compiled[@]}" --device "$device" --amp bf16 \
    --channels-last --no-eval --compile-mode "$compile_mode" "${tp_args[@]}" --out "$out/throughput_compiled.json"
step overhead_compiled 240 "$py" -m shiftvit.bench overhead --device "$device" "${overhead_args[@]}" --compile \
    --compile-mode "$compile_mode" --no-startup --out "$out/overhead_compiled.json"
# the steps that settle no target of #16, after those that do (they explain the numbers above)
# where Shift-T's eager step goes (bf16, channels-last): the GPU's busy time against the wall, kernels per step,
# the copies (run c02ec23 saw PyTorch's GroupNorm convert channels-last tensors to NCHW: how much of a step is that?)
step profile 120 "$py" -m shiftvit.bench profile "${profile_args[@]}" --device "$device" --amp bf16 --channels-last \
    --out "$out/profile.json"
# the same step under deterministic algorithms with PyTorch's NaN fill of every new tensor (its default; run.py's
# deterministic mode turns the fill off): the fills' kernels and time per step, what run.py no longer pays
step profile_filled 60 "$py" -m shiftvit.bench profile "${profile_filled_args[@]}" --device "$device" --amp bf16 \
    --channels-last --deterministic filled --out "$out/profile_filled.json"
# Shift-T's late stages at batch 64, as it trains (bf16, channels-last): tensors small enough that launches and
# their host cost, not bytes, set the time; where a one-launch kernel should win, and in the whole model did not
for stage_shape in 3:64,384,14,14 4:64,768,7,7; do
    [ "${QUICK:-0}" = 1 ] && shape_arg=() || shape_arg=(--shape "${stage_shape#*:}")
    step "shift_stage${stage_shape%%:*}_channels_last_bfloat16" 30 "$py" -m shiftvit.bench shift --device "$device" \
        --channels-last --dtype bfloat16 "${shape_arg[@]}" "${late_shift_args[@]}" \
        --out "$out/shift_stage${stage_shape%%:*}_channels_last_bfloat16.json"
done
# CIFAR's batches (random images in its format): timm's per-sample transforms, crop_flip per sample and on the
# device, beside shiftvit_micro's training steps at the same batch: does a loader bound a 32-px CIFAR job?
step loader 90 "$py" -m shiftvit.bench loader --device "$device" "${loader_args[@]}" --out "$out/loader.json"
# what deterministic algorithms cost the eager loop (run.py's default is train.deterministic=true)
step overhead_eager_nondeterministic 90 "$py" -m shiftvit.bench overhead --device "$device" "${overhead_args[@]}" \
    --no-deterministic --no-startup --out "$out/overhead_eager_nondeterministic.json"
# Shift-T compiled whole (train.compile_scope=model, the default) against eager: the other scope's speed
step throughput_compiled_whole 300 $(cold) "$py" -m shiftvit.bench throughput "${compiled_whole[@]}" --device "$device" \
    --amp bf16 --channels-last --no-eval --compile-mode "$compile_mode" "${tp_args[@]}" \
    --out "$out/throughput_compiled_whole.json"
if [ "$device" = cuda ]; then  # last, in what is left of the budget: the tests that compile or run run.py
    step tests_run_py 600 "$py" -m pytest -q --durations=0 -p no:cacheprovider tests/test_cuda.py -k "$slow"
fi
# the targets of issue #16 read off the JSON above: the table this run settles, always made, past the budget
# if the steps spent it (it reads files: seconds, most of them importing torch)
budget=$((SECONDS + 60))
step targets 60 "$py" -m shiftvit.bench targets "$out" --out "$out/targets.json"
grep -h "^=== .* rc=" "$log" | grep -v " rc=0 " && exit 1
exit 0
