"""Benchmarks that print tables of ratios measured in one run: ``python -m shiftvit.bench shift``.

Ratios, not absolute times, are the numbers to compare: both sides of a ratio run interleaved in the same
process on the same tensors, so machine load affects them alike.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, Iterable, Optional

import torch

from ..allocator import MODES as MALLOC_MODES
from ..allocator import configure as configure_malloc
from ..config import COMPILE_MODES, TrainSettings
from ..devices import AMP_DTYPES, cuda_devices_if_absent
from .loader import CIFAR_FILES, _print_loader, bench_loader
from .models import (
    DEFAULT_MODELS,
    MATCHED_MIXERS,
    SHIFT_T,
    _print_fast,
    _print_solver,
    _print_throughput,
    bench_fast,
    bench_solver,
    bench_throughput,
    model_problem,
    models_problem,
)
from .norm import _print_norm, bench_norm
from .profile import DETERMINISTIC_MODES, _print_profile, bench_profile, profile_problem
from .shift import DTYPES, STAGE1_SHAPE, _print_shift, bench_shift
from .targets import _print_targets, check_targets
from .timing import _write
from .training import _print_overhead, bench_overhead


def _key_values(pairs: Iterable[str]) -> Dict[str, object]:
    """``["num_train=20480"]`` -> ``{"num_train": 20480}`` (YAML scalars, as Hydra reads an override's value)."""
    import yaml

    out: Dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--data-arg {pair!r} is not KEY=VALUE, e.g. --data-arg num_train=20480")
        out[key] = yaml.safe_load(value)
    return out


def _shape(args: argparse.Namespace) -> tuple:
    """``--shape N,C,H,W`` as a tuple, or the small odd-sized tensor of ``--quick``."""
    return (2, 24, 9, 7) if args.quick else tuple(int(v) for v in args.shape.split(","))


DEVICE_CHOICES = "cpu | cuda | cuda:N"


def device_problem(device: str) -> Optional[str]:
    """None when ``device`` can run here, else why not: a benchmark asked for a missing GPU would otherwise end in
    a driver's traceback after its models were built."""
    try:
        dev = torch.device(device)
    except RuntimeError:
        return f"--device {device!r} is not a device; use --device cpu, cuda or cuda:N"
    count = cuda_devices_if_absent(dev)
    if count == 0:
        return f"--device {device}: no CUDA device here; use --device cpu"
    if count is not None:
        return f"--device {device}: this machine has {count} CUDA device(s); use --device cuda:0 to cuda:{count - 1}"
    return None


def _refusal(args: argparse.Namespace) -> Optional[str]:
    """None when the command can run, else its one-line error; checked before anything is built or written."""
    problem = device_problem(args.device) if hasattr(args, "device") else None
    if problem:
        return problem
    if args.command == "throughput":
        return models_problem(args.models)
    if args.command == "profile":
        return profile_problem(args.models)
    if (args.command == "loader" and args.model != "none") or args.command in ("fast", "overhead"):
        return model_problem(args.model, mixer=False)
    if args.command == "solver":
        return model_problem(args.reference, mixer=False)
    return None


def main(argv: Optional[Iterable[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m shiftvit.bench", description=__doc__)
    default_device = "cuda" if torch.cuda.is_available() else "cpu"
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--malloc", default=TrainSettings.malloc, choices=MALLOC_MODES,
                        help="CPU allocator mode, as run.py's train.malloc (default: run.py's)")
    on_device = argparse.ArgumentParser(add_help=False, parents=[common])
    on_device.add_argument("--device", default=default_device, help=f"{DEVICE_CHOICES} (default: cuda if present)")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("shift", parents=[on_device],
                       help="shift op forward+backward vs clone() and vs the official implementation")
    stage1 = ",".join(map(str, STAGE1_SHAPE))
    s.add_argument("--shape", default=stage1, help="N,C,H,W (default: Shift-T stage 1 at batch 64)")
    s.add_argument("--gamma", default="1/12")
    s.add_argument("--repeats", type=int, default=20)
    s.add_argument("--channels-last", action="store_true")
    s.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    s.add_argument("--threads", type=int, default=None)
    s.add_argument("--quick", action="store_true", help="tiny tensor, 3 repeats: checks the benchmark runs")
    s.add_argument("--out", default="bench_results/shift.json", help="JSON output ('' to skip)")
    t = sub.add_parser("throughput", parents=[on_device],
                       help="eval and training images/s of timm models and of every mixer")
    t.add_argument("models", nargs="*", help="timm names or shiftvit_r2_tiny[mixer] (FLOPs-matched), each with "
                   "optional suffixes: GPU kernels (+triton, +gn_triton, +gn_as_stored) and +compiled (that model "
                   "through torch.compile, beside the others eager); default: Shift-T, light-T, Swin-T, ResNet-50, "
                   "ConvNeXt-T, PoolFormer-S24 and every mixer at Shift-T")
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--img-size", type=int, default=224)
    t.add_argument("--repeats", type=int, default=5)
    t.add_argument("--steps", type=int, default=3)
    t.add_argument("--channels-last", action="store_true")
    t.add_argument("--compile", action="store_true")
    t.add_argument("--compile-mode", default=TrainSettings.compile_mode, choices=COMPILE_MODES)
    t.add_argument("--amp", default=TrainSettings.amp, choices=sorted(AMP_DTYPES), help="autocast dtype")
    t.add_argument("--no-train", action="store_true", help="inference only")
    t.add_argument("--no-eval", action="store_true",
                   help="training only (with --compile: one compilation per model instead of two)")
    t.add_argument("--quick", action="store_true", help="two small models, batch 2, 64 px: checks it runs")
    t.add_argument("--out", default="bench_results/throughput.json")
    f = sub.add_parser("fast", parents=[on_device],
                       help="Shift-T inference: official structure vs ours, same weights, same outputs")
    f.add_argument("--model", default=SHIFT_T)
    f.add_argument("--batch-size", type=int, default=64)
    f.add_argument("--img-size", type=int, default=224)
    f.add_argument("--repeats", type=int, default=3)
    f.add_argument("--amp", default=TrainSettings.amp, choices=sorted(AMP_DTYPES), help="autocast dtype")
    f.add_argument("--out", default="bench_results/fast.json")
    n = sub.add_parser("norm", parents=[on_device],
                       help="GroupNorm(1, C) forward+backward: the norm kernels vs clone()")
    n.add_argument("--shape", default=stage1, help="N,C,H,W (default: Shift-T stage 1 at batch 64)")
    n.add_argument("--repeats", type=int, default=20)
    n.add_argument("--compile", action="store_true", help="also Inductor's fused group_norm")
    n.add_argument("--quick", action="store_true", help="tiny tensor, 3 repeats: checks the benchmark runs")
    n.add_argument("--out", default="bench_results/norm.json")
    v = sub.add_parser("solver", parents=[common], help="time the matched-FLOPs depth solver (uncached and cached)")
    v.add_argument("--reference", default=SHIFT_T)
    v.add_argument("--img-size", type=int, default=224)
    v.add_argument("--out", default="bench_results/solver.json")
    o = sub.add_parser("overhead", parents=[common], help="run.py training rate vs a bare PyTorch loop; start-up time")
    o.add_argument("--epochs", type=int, default=3)
    o.add_argument("--model", default="shiftvit_nano")
    o.add_argument("--data", default="digits", help="an in-memory data set: digits | relations | synthetic ...")
    o.add_argument("--batch-size", type=int, default=64)
    o.add_argument("--device", default="cpu", help=f"{DEVICE_CHOICES} (default: cpu)")
    o.add_argument("--data-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="a data option for both sides, e.g. num_train=20480 (repeatable)")
    o.add_argument("--compile", action="store_true", help="both sides compile the model (train.compile=true)")
    o.add_argument("--compile-mode", default=TrainSettings.compile_mode, choices=COMPILE_MODES)
    o.add_argument("--no-startup", action="store_true", help="skip timing run.py --help against import torch")
    o.add_argument("--no-deterministic", action="store_true",
                   help="both sides without deterministic algorithms (train.deterministic=false)")
    o.add_argument("--quick", action="store_true", help="start-up timed once, not the fastest of 3: checks it runs")
    o.add_argument("--out", default="bench_results/overhead.json")
    ld = sub.add_parser("loader", parents=[on_device],
                        help="CIFAR's training batches: timm's per-sample transforms vs crop_flip, per sample and on "
                             "the device; beside a small model's training steps")
    ld.add_argument("--data", default="cifar10", choices=tuple(CIFAR_FILES))
    ld.add_argument("--root", default=None, help="a CIFAR folder (default: random images written in its format)")
    ld.add_argument("--num-train", type=int, default=50_000, help="images written without --root (default: CIFAR's)")
    ld.add_argument("--batch-size", type=int, default=256)
    ld.add_argument("--img-size", type=int, default=32)
    ld.add_argument("--batches", type=int, default=20, help="batches per round and case")
    ld.add_argument("--repeats", type=int, default=5)
    ld.add_argument("--model", default="shiftvit_micro", help="the model whose training steps are timed beside "
                                                             "(none: no model)")
    ld.add_argument("--quick", action="store_true", help="512 images, 2 batches of 64, 2 rounds: checks it runs")
    ld.add_argument("--out", default="bench_results/loader.json")
    r = sub.add_parser("profile", parents=[on_device],
                       help="where an eager training step's time goes: PyTorch's profiler, operators by own time")
    r.add_argument("models", nargs="*", help="as for throughput, eager (default: Shift-T, Shift-T with "
                   "+gn_as_stored, its identity backbone)")
    r.add_argument("--batch-size", type=int, default=64)
    r.add_argument("--img-size", type=int, default=224)
    r.add_argument("--steps", type=int, default=3, help="steps timed, then as many profiled")
    r.add_argument("--channels-last", action="store_true")
    r.add_argument("--amp", default=TrainSettings.amp, choices=sorted(AMP_DTYPES), help="autocast dtype")
    r.add_argument("--top", type=int, default=15, help="operators listed per model")
    r.add_argument("--deterministic", default="off", choices=DETERMINISTIC_MODES,
                   help="off: as the other benchmarks; run: deterministic algorithms as run.py trains by default; "
                        "filled: those with PyTorch's NaN fill of every new tensor (its default, not run.py's)")
    r.add_argument("--quick", action="store_true", help="small models, batch 2, 64 px, one step: checks it runs")
    r.add_argument("--out", default="bench_results/profile.json")
    g = sub.add_parser("targets", parents=[common], help="issue #16's GPU targets, read off other benchmarks' JSON")
    g.add_argument("dirs", nargs="+", type=Path, help="folders of benchmark JSON (gpu_check.sh's OUT_DIR)")
    g.add_argument("--out", default="bench_results/targets.json")
    args = p.parse_args(argv)
    refusal = _refusal(args)
    if refusal:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    malloc = configure_malloc(args.malloc)

    def write(result: Dict[str, object], out: Optional[str]) -> None:  # every result says how memory was got
        _write({**result, "malloc": malloc}, out)

    if args.command == "shift":
        result = bench_shift(_shape(args), args.gamma, 3 if args.quick else args.repeats, args.channels_last,
                             args.threads, args.device, args.dtype)
        _print_shift(result)
        write(result, args.out)
    elif args.command == "throughput":
        if args.quick:
            models = args.models or ["shiftvit_light_tiny", "shiftvit_light_tiny[attn]"]
            result = bench_throughput(models, batch_size=2, img_size=64, repeats=2, steps=1, warmup=1,
                                      device=args.device, channels_last=args.channels_last, compile=args.compile,
                                      train=not args.no_train, evaluate=not args.no_eval, amp=args.amp,
                                      compile_mode=args.compile_mode)
        else:
            models = args.models or [*DEFAULT_MODELS, *(f"{SHIFT_T}[{m}]" for m in MATCHED_MIXERS)]
            result = bench_throughput(models, args.batch_size, args.img_size, args.repeats, args.steps,
                                      device=args.device, channels_last=args.channels_last, compile=args.compile,
                                      train=not args.no_train, evaluate=not args.no_eval, amp=args.amp,
                                      compile_mode=args.compile_mode)
        _print_throughput(result)
        write(result, args.out)
    elif args.command == "fast":
        result = bench_fast(args.model, args.batch_size, args.img_size, args.repeats, args.device, args.amp)
        _print_fast(result)
        write(result, args.out)
    elif args.command == "overhead":
        result = bench_overhead(args.epochs, args.model, args.device, args.data, args.batch_size,
                                _key_values(args.data_arg), args.compile, args.compile_mode, not args.no_startup,
                                not args.no_deterministic, startup_repeats=1 if args.quick else 3)
        _print_overhead(result)
        write(result, args.out)
    elif args.command == "norm":
        result = bench_norm(_shape(args), 3 if args.quick else args.repeats, args.device, compile=args.compile)
        _print_norm(result)
        write(result, args.out)
    elif args.command == "loader":
        model = None if args.model == "none" else args.model
        if args.quick:
            result = bench_loader(args.root, args.data, num_train=512, batch_size=64, img_size=args.img_size,
                                  batches=2, repeats=2, device=args.device, model=model)
        else:
            result = bench_loader(args.root, args.data, args.num_train, args.batch_size, args.img_size, args.batches,
                                  args.repeats, args.device, model)
        _print_loader(result)
        write(result, args.out)
    elif args.command == "profile":
        if args.quick:
            models = args.models or ["shiftvit_light_tiny", "shiftvit_light_tiny+gn_as_stored"]
            result = bench_profile(models, batch_size=2, img_size=64, steps=1, device=args.device, amp=args.amp,
                                   channels_last=args.channels_last, top=args.top, deterministic=args.deterministic)
        else:
            models = args.models or [SHIFT_T, f"{SHIFT_T}+gn_as_stored", f"{SHIFT_T}[identity]"]
            result = bench_profile(models, args.batch_size, args.img_size, args.steps, args.device, args.amp,
                                   args.channels_last, args.top, args.deterministic)
        _print_profile(result)
        write(result, args.out)
    elif args.command == "targets":
        result = check_targets(args.dirs)
        _print_targets(result)
        write(result, args.out)
    elif args.command == "solver":
        result = bench_solver(args.reference, args.img_size)
        _print_solver(result)
        write(result, args.out)
    return 0
