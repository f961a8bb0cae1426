"""Benchmarks that print tables of ratios measured in one run: ``python -m shiftvit.bench shift``.

Ratios, not absolute times, are the numbers to compare: both sides of a ratio run interleaved in the same
process on the same tensors, so machine load affects them alike.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import torch

from .allocator import MODES as MALLOC_MODES
from .allocator import configure as configure_malloc
from .ops import _shift_write_once, set_gpu_kernel, shift_by, shift_channels, shift_reference


def synchronizer(device: torch.device) -> Callable[[], None]:
    """Wait for queued kernels (CUDA launches are asynchronous: a timer must stop after the work, not the call)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def time_interleaved(fns: Dict[str, Callable[[], None]], repeats: int, warmup: int = 2,
                     device: torch.device = torch.device("cpu")) -> Dict[str, List[float]]:
    """Run each function ``warmup`` times, then ``repeats`` rounds in which every function runs once."""
    sync = synchronizer(device)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync()
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return times


def bench_shift(shape=(64, 96, 56, 56), gamma: str = "1/12", repeats: int = 20, channels_last: bool = False,
                threads: Optional[int] = None, device: str = "cpu") -> Dict[str, object]:
    """Shift forward+backward vs ``x.clone()`` + ``grad.clone()`` (the memory-traffic floor) vs official."""
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(*shape, device=dev).contiguous(memory_format=fmt).requires_grad_(True)
    grad = torch.randn(*shape, device=dev).contiguous(memory_format=fmt)
    g = shift_channels(shape[1], gamma)

    def clone_floor() -> None:
        x.detach().clone()
        grad.clone()

    def ours() -> None:
        x.grad = None
        shift_by(x, g).backward(grad)

    def official() -> None:  # zeros_like + five slice copies, autograd through the indexing
        x.grad = None
        shift_reference(x, g).backward(grad)

    def kernel(impl: Callable[..., torch.Tensor]) -> Callable[[], None]:
        return lambda: (impl(x.detach(), g), impl(grad, g, inverse=True))  # what forward + backward run

    fns = {"clone": clone_floor, "shiftvit": ours, "official": official,
           "write_once": kernel(_shift_write_once), "few_launches": kernel(shift_reference)}
    if _triton_usable(dev):
        from .shift_triton import shift_triton

        fns["triton"] = kernel(shift_triton)
    times = time_interleaved(fns, repeats, device=dev)
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    return dict(
        benchmark="shift", shape=list(shape), gamma=gamma, channels_last=channels_last, repeats=repeats,
        device=_device_name(dev),
        threads=torch.get_num_threads(), torch=torch.__version__, machine=platform.processor() or platform.machine(),
        median_ms={k: 1e3 * v for k, v in med.items()}, min_ms={k: 1e3 * v for k, v in best.items()},
        ratio_to_clone={k: med[k] / med["clone"] for k in med},
        ratio_to_clone_min={k: best[k] / best["clone"] for k in best},
    )


def _print_shift(r: Dict[str, object]) -> None:
    fmt = "channels_last" if r["channels_last"] else "NCHW"
    print(f"shift fwd+bwd, shape {tuple(r['shape'])} {fmt} fp32, gamma={r['gamma']}, {r['device']}, "
          f"{r['threads']} threads, {r['repeats']} interleaved repeats")
    print(f"{'impl':<14}{'median ms':>12}{'min ms':>10}{'x clone (median)':>18}{'x clone (min)':>15}")
    for k in r["median_ms"]:
        print(f"{k:<14}{r['median_ms'][k]:>12.2f}{r['min_ms'][k]:>10.2f}"
              f"{r['ratio_to_clone'][k]:>18.3f}{r['ratio_to_clone_min'][k]:>15.3f}")


def _minor_faults(call: Callable[[], object]) -> Optional[int]:
    """Page faults the kernel served during one call (each one maps and zeroes a fresh 4 KiB page)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    call()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def _triton_usable(device: torch.device) -> bool:
    """The one-launch Triton shift is benchmarked beside the others on CUDA, where Triton is installed."""
    if device.type != "cuda":
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _with_gpu_kernel(name: str, call: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
    """``call`` run with the given GPU shift kernel, the process's own restored afterwards."""
    def run() -> torch.Tensor:
        previous = set_gpu_kernel(name)
        try:
            return call()
        finally:
            set_gpu_kernel(previous)
    return run


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"


def _write(result: Dict[str, object], out: Optional[str]) -> None:
    if out:
        from .records import atomic_write_bytes

        path = Path(out)
        atomic_write_bytes(path, json.dumps(result, indent=2).encode())
        print(f"wrote {path}")


def bench_solver(reference: str = "shiftvit_r2_tiny", img_size: int = 224,
                 mixers: Sequence[str] = ("attn", "global_attn", "mlp", "dwconv", "pool", "identity", "random"),
                 ) -> Dict[str, object]:
    """Seconds per ``solve_depths`` call: first (counts a probe model) and repeated (cached)."""
    from .flops import _CACHE, solve_depths

    _CACHE.clear()
    rows = {}
    for mixer in mixers:
        t0 = time.perf_counter()
        sol = solve_depths(reference, img_size, mixer=mixer)
        t1 = time.perf_counter()
        solve_depths(reference, img_size, mixer=mixer)
        t2 = time.perf_counter()
        rows[mixer] = {"depths": list(sol.depths), "first_s": t1 - t0, "cached_s": t2 - t1, "error": sol.error}
    return dict(benchmark="solver", reference=reference, img_size=img_size, rows=rows)


def _print_solver(r: Dict[str, object]) -> None:
    print(f"solve_depths at the budget of {r['reference']} ({r['img_size']} px), match=flops")
    print(f"{'mixer':<13}{'depths':>12}{'error':>9}{'first s':>10}{'cached s':>10}")
    for mixer, row in r["rows"].items():
        print(f"{mixer:<13}{','.join(map(str, row['depths'])):>12}{row['error']:>+9.2%}"
              f"{row['first_s']:>10.3f}{row['cached_s']:>10.3f}")


DEFAULT_MODELS = ("shiftvit_r2_tiny", "shiftvit_light_tiny", "swin_tiny_patch4_window7_224", "resnet50",
                  "convnext_tiny", "poolformer_s24")
MATCHED_MIXERS = ("attn", "global_attn", "mlp", "dwconv", "pool", "identity")


def _build(spec: str, img_size: int):
    """``name`` or ``name[mixer]`` (a ShiftViT with that mixer, depths solved to the name's FLOPs)."""
    import timm

    import shiftvit.models  # noqa: F401  (registers the models with timm)

    from .flops import count, solve_depths

    kwargs: Dict[str, object] = {}
    name = spec
    if "[" in spec:
        name, mixer = spec[:-1].split("[")
        kwargs = dict(mixer=mixer, depths=solve_depths(name, img_size, mixer=mixer).depths)
    cost = count(name, img_size, **kwargs)  # count() passes img_size on to ShiftViT models itself
    if name.startswith("shiftvit"):
        kwargs["img_size"] = img_size
    return timm.create_model(name, **kwargs), cost


AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def bench_throughput(models: Sequence[str], batch_size: int = 64, img_size: int = 224, repeats: int = 5,
                     steps: int = 3, warmup: int = 2, device: str = "cpu", channels_last: bool = False,
                     compile: bool = False, train: bool = True, amp: str = "none") -> Dict[str, object]:
    """Images/s in eval (no grad) and in training (forward + backward + AdamW step); for each model the
    minimum and median over ``repeats`` rounds of ``steps`` batches, after ``warmup`` batches.
    ``amp`` runs the forward passes under autocast (bf16 or fp16, as ``run.py``'s ``train.amp``)."""
    if amp not in AMP_DTYPES:
        raise ValueError(f"amp={amp!r} is not one of: {', '.join(AMP_DTYPES)}")
    dev = torch.device(device)
    sync = synchronizer(dev)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(batch_size, 3, img_size, img_size, device=dev).contiguous(memory_format=fmt)
    autocast = torch.autocast(dev.type, dtype=AMP_DTYPES[amp], enabled=amp != "none")
    scaler = torch.amp.GradScaler(dev.type, enabled=amp == "fp16")
    rows: Dict[str, Dict[str, object]] = {}

    def rates(call: Callable[[], object]) -> List[float]:
        for _ in range(warmup):
            call()
        sync()
        out = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(steps):
                call()
            sync()
            out.append(steps * batch_size / (time.perf_counter() - t0))
        return out

    for spec in models:
        model, cost = _build(spec, img_size)
        model = model.to(dev, memory_format=fmt)
        forward = torch.compile(model) if compile else model
        row: Dict[str, object] = {"macs": cost.total_macs, "params": cost.total_params}
        model.eval()

        def infer(f=forward) -> None:
            with torch.no_grad(), autocast:
                f(x)

        measured = rates(infer)
        row.update(eval_median=statistics.median(measured), eval_min=min(measured))
        if train:
            model.train()
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
            target = torch.randint(0, model.num_classes, (batch_size,), device=dev)

            def step(f=forward, opt=optimizer, y=target) -> None:
                opt.zero_grad(set_to_none=True)
                with autocast:
                    loss = torch.nn.functional.cross_entropy(f(x), y)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()

            measured = rates(step)
            row.update(train_median=statistics.median(measured), train_min=min(measured))
        rows[spec] = row
        del model, forward
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    base = rows.get(models[0], {})
    for row in rows.values():
        for key in ("eval_median", "train_median"):
            if key in row and base.get(key):
                row[key.replace("median", "ratio")] = row[key] / base[key]
    return dict(benchmark="throughput", batch_size=batch_size, img_size=img_size, repeats=repeats, steps=steps,
                device=_device_name(dev), channels_last=channels_last, compile=compile, amp=amp,
                threads=torch.get_num_threads(), torch=torch.__version__, reference=models[0], rows=rows)


def _print_throughput(r: Dict[str, object]) -> None:
    print(f"throughput, batch {r['batch_size']}, {r['img_size']} px, {r['device']}, {r['threads']} threads, "
          f"amp={r['amp']}, channels_last={r['channels_last']}, compile={r['compile']}; "
          f"ratios to {r['reference']} (median)")
    print(f"{'model':<34}{'GMACs':>7}{'params M':>9}{'eval img/s':>11}{'(min)':>8}{'ratio':>7}"
          f"{'train img/s':>12}{'(min)':>8}{'ratio':>7}")
    for name, row in r["rows"].items():
        train = (f"{row['train_median']:>12.1f}{row['train_min']:>8.1f}{row.get('train_ratio', float('nan')):>7.2f}"
                 if "train_median" in row else "")
        print(f"{name:<34}{row['macs'] / 1e9:>7.2f}{row['params'] / 1e6:>9.2f}{row['eval_median']:>11.1f}"
              f"{row['eval_min']:>8.1f}{row.get('eval_ratio', float('nan')):>7.2f}{train}")


class OfficialShift(torch.nn.Module):
    """The official shift, rebuilt for the baseline: zeros_like + five slice copies, autograd through them."""

    def __init__(self, g: int):
        super().__init__()
        self.g = g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return shift_reference(x, self.g)


def official_structure(model: torch.nn.Module) -> torch.nn.Module:
    """The same weights in the official implementation's structure: NCHW 1x1 convs, GroupNorm, and the
    official shift in place of ours (the blocks are otherwise identical by construction)."""
    from .models.mixers import ShiftMixer

    for module in model.modules():
        if hasattr(module, "token_mixer") and isinstance(module.token_mixer, ShiftMixer):
            module.token_mixer = OfficialShift(module.token_mixer.shift_size)
    return model


def bench_fast(model_name: str = "shiftvit_r2_tiny", batch_size: int = 64, img_size: int = 224,
               repeats: int = 3, device: str = "cpu") -> Dict[str, object]:
    """Inference images/s of Shift-T: official structure vs ours (NCHW) vs ours (channels-last), same weights."""
    import timm

    import shiftvit.models  # noqa: F401  (registers the models with timm)

    dev = torch.device(device)
    official = official_structure(timm.create_model(model_name, img_size=img_size)).eval().to(dev)

    def same_weights(memory_format: torch.memory_format) -> torch.nn.Module:
        model = timm.create_model(model_name, img_size=img_size).eval()
        model.load_state_dict(official.state_dict())
        return model.to(dev, memory_format=memory_format)

    ours, ours_cl = same_weights(torch.contiguous_format), same_weights(torch.channels_last)
    x = torch.randn(batch_size, 3, img_size, img_size, device=dev)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    fns = {"official": lambda: official(x), "ours_nchw": lambda: ours(x), "ours_channels_last": lambda: ours_cl(x_cl)}
    if _triton_usable(dev):  # the same models with the one-launch shift kernel (opt-in until measured)
        fns.update(ours_triton_nchw=_with_gpu_kernel("triton", fns["ours_nchw"]),
                   ours_triton_channels_last=_with_gpu_kernel("triton", fns["ours_channels_last"]))
    with torch.no_grad():
        reference = official(x)
        diffs = {k: (fn() - reference).abs().max().item() for k, fn in fns.items() if k != "official"}
        times = time_interleaved(fns, repeats, warmup=1, device=dev)
        faults = {k: _minor_faults(fn) for k, fn in fns.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    return dict(benchmark="fast", model=model_name, batch_size=batch_size, img_size=img_size, repeats=repeats,
                device=_device_name(dev),
                threads=torch.get_num_threads(), max_abs_diff=diffs, minor_page_faults_per_pass=faults,
                images_per_s={k: batch_size / v for k, v in med.items()},
                speedup={k: med["official"] / v for k, v in med.items()})


def bare_loop_images_per_s(model_name: str = "shiftvit_nano", epochs: int = 3, batch_size: int = 64,
                           seed: int = 0) -> List[float]:
    """What a researcher would write by hand: same model, same digits loader, AdamW, cross-entropy."""
    import timm

    from .data import build_digits, make_loaders

    torch.manual_seed(seed)
    bundle = build_digits()
    train, _ = make_loaders(bundle, batch_size, seed)
    model = timm.create_model(model_name, num_classes=bundle.num_classes, in_chans=bundle.in_chans)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    model.train()
    rates = []
    for epoch in range(epochs):
        train.sampler.set_epoch(epoch)
        seen, start = 0, time.perf_counter()
        for x, y in train:
            loss = criterion(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += x.shape[0]
        rates.append(seen / (time.perf_counter() - start))
    return rates


def bench_overhead(epochs: int = 3, model_name: str = "shiftvit_nano") -> Dict[str, object]:
    """Training images/s through ``run.py`` (its own per-epoch measurement) vs the bare loop, and start-up."""
    import subprocess
    import sys
    import tempfile

    from .records import read_metrics

    root = Path(__file__).resolve().parents[1]
    bare = bare_loop_images_per_s(model_name, epochs)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(root / "run.py"), f"model={model_name}", f"train.epochs={epochs}",
               "logger=none", "train.ema=false", f"hydra.run.dir={tmp}/run"]
        subprocess.run(cmd, check=True, capture_output=True, cwd=tmp)
        framework = [r["train_images_per_s"] for r in read_metrics(Path(tmp) / "run")]

    def wall(args: List[str], repeats: int = 3) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            subprocess.run(args, check=True, capture_output=True, cwd=root)
            times.append(time.perf_counter() - t0)
        return min(times)

    help_s = wall([sys.executable, str(root / "run.py"), "--help"])
    torch_s = wall([sys.executable, "-c", "import torch"])
    return dict(benchmark="overhead", model=model_name, epochs=epochs, threads=torch.get_num_threads(),
                bare_images_per_s=bare, run_py_images_per_s=framework,
                step_rate_ratio=statistics.median(framework) / statistics.median(bare),
                help_s=help_s, import_torch_s=torch_s, startup_ratio=help_s / torch_s)


def _print_overhead(r: Dict[str, object]) -> None:
    print(f"training throughput, {r['model']} on digits, {r['epochs']} epochs, {r['threads']} threads (median epoch)")
    print(f"  bare PyTorch loop      {statistics.median(r['bare_images_per_s']):>9.1f} images/s")
    print(f"  run.py (engine)        {statistics.median(r['run_py_images_per_s']):>9.1f} images/s")
    print(f"  ratio run.py / bare    {r['step_rate_ratio']:>9.3f}")
    print(f"start-up: run.py --help {r['help_s']:.2f} s, python -c 'import torch' {r['import_torch_s']:.2f} s, "
          f"ratio {r['startup_ratio']:.2f}")


def main(argv: Optional[Iterable[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m shiftvit.bench", description=__doc__)
    default_device = "cuda" if torch.cuda.is_available() else "cpu"
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--malloc", default="retain", choices=MALLOC_MODES,
                        help="CPU allocator mode, as run.py's train.malloc (default: retain, as run.py)")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("shift", parents=[common],
                       help="shift op forward+backward vs clone() and vs the official implementation")
    s.add_argument("--shape", default="64,96,56,56", help="N,C,H,W (default: Shift-T stage 1 at batch 64)")
    s.add_argument("--gamma", default="1/12")
    s.add_argument("--repeats", type=int, default=20)
    s.add_argument("--channels-last", action="store_true")
    s.add_argument("--threads", type=int, default=None)
    s.add_argument("--device", default=default_device, help="cpu | cuda | cuda:N (default: cuda if present)")
    s.add_argument("--quick", action="store_true", help="tiny tensor, 3 repeats: checks the benchmark runs")
    s.add_argument("--out", default="bench_results/shift.json", help="JSON output ('' to skip)")
    t = sub.add_parser("throughput", parents=[common],
                       help="eval and training images/s of timm models and of every mixer")
    t.add_argument("models", nargs="*", help="timm names or shiftvit_r2_tiny[mixer] (FLOPs-matched); default: "
                   "Shift-T, light-T, Swin-T, ResNet-50, ConvNeXt-T, PoolFormer-S24 and every mixer at Shift-T")
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--img-size", type=int, default=224)
    t.add_argument("--repeats", type=int, default=5)
    t.add_argument("--steps", type=int, default=3)
    t.add_argument("--device", default=default_device, help="cpu | cuda | cuda:N (default: cuda if present)")
    t.add_argument("--channels-last", action="store_true")
    t.add_argument("--compile", action="store_true")
    t.add_argument("--amp", default="none", choices=sorted(AMP_DTYPES), help="autocast dtype (default: fp32)")
    t.add_argument("--no-train", action="store_true", help="inference only")
    t.add_argument("--quick", action="store_true", help="two small models, batch 2, 64 px: checks it runs")
    t.add_argument("--out", default="bench_results/throughput.json")
    f = sub.add_parser("fast", parents=[common],
                       help="Shift-T inference: official structure vs ours, same weights, same outputs")
    f.add_argument("--model", default="shiftvit_r2_tiny")
    f.add_argument("--batch-size", type=int, default=64)
    f.add_argument("--img-size", type=int, default=224)
    f.add_argument("--repeats", type=int, default=3)
    f.add_argument("--device", default=default_device, help="cpu | cuda | cuda:N (default: cuda if present)")
    f.add_argument("--out", default="bench_results/fast.json")
    v = sub.add_parser("solver", parents=[common], help="time the matched-FLOPs depth solver (uncached and cached)")
    v.add_argument("--reference", default="shiftvit_r2_tiny")
    v.add_argument("--img-size", type=int, default=224)
    v.add_argument("--out", default="bench_results/solver.json")
    o = sub.add_parser("overhead", parents=[common], help="run.py training rate vs a bare PyTorch loop; start-up time")
    o.add_argument("--epochs", type=int, default=3)
    o.add_argument("--model", default="shiftvit_nano")
    o.add_argument("--out", default="bench_results/overhead.json")
    args = p.parse_args(argv)
    malloc = configure_malloc(args.malloc)

    def write(result: Dict[str, object], out: Optional[str]) -> None:  # every result says how memory was got
        _write({**result, "malloc": malloc}, out)

    if args.command == "shift":
        shape = (2, 24, 9, 7) if args.quick else tuple(int(v) for v in args.shape.split(","))
        result = bench_shift(shape, args.gamma, 3 if args.quick else args.repeats, args.channels_last, args.threads,
                             args.device)
        _print_shift(result)
        write(result, args.out)
    elif args.command == "throughput":
        if args.quick:
            models = args.models or ["shiftvit_light_tiny", "shiftvit_light_tiny[attn]"]
            result = bench_throughput(models, batch_size=2, img_size=64, repeats=2, steps=1, warmup=1,
                                      device=args.device, channels_last=args.channels_last, compile=args.compile,
                                      train=not args.no_train, amp=args.amp)
        else:
            models = args.models or [*DEFAULT_MODELS, *(f"shiftvit_r2_tiny[{m}]" for m in MATCHED_MIXERS)]
            result = bench_throughput(models, args.batch_size, args.img_size, args.repeats, args.steps,
                                      device=args.device, channels_last=args.channels_last, compile=args.compile,
                                      train=not args.no_train, amp=args.amp)
        _print_throughput(result)
        write(result, args.out)
    elif args.command == "fast":
        result = bench_fast(args.model, args.batch_size, args.img_size, args.repeats, args.device)
        print(f"{result['model']} eval, batch {result['batch_size']}, {result['img_size']} px, {result['device']}, "
              f"{result['threads']} threads (median of {result['repeats']})")
        for k, v in result["images_per_s"].items():
            diff = result["max_abs_diff"].get(k, 0.0)
            print(f"  {k:<26}{v:>9.1f} img/s  x{result['speedup'][k]:.2f}  max|diff| {diff:.2e}  "
                  f"page faults/pass {result['minor_page_faults_per_pass'][k]}")
        write(result, args.out)
    elif args.command == "overhead":
        result = bench_overhead(args.epochs, args.model)
        _print_overhead(result)
        write(result, args.out)
    elif args.command == "solver":
        result = bench_solver(args.reference, args.img_size)
        _print_solver(result)
        write(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
