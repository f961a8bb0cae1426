"""Whole models: images/s of timm models and of every token mixer at matched FLOPs (``throughput``), Shift-T in
the official structure against ours with the same weights (``fast``), and the matched-FLOPs depth solver's
own cost (``solver``)."""
from __future__ import annotations

import re
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from ..config import BLOCKS_SCOPE, MODEL_SCOPE
from ..devices import autocast_for
from ..ops import GPU_KERNELS, GPU_NORM_KERNELS, auto_shift_choices, shift_official
from ..spec import MIXER_OPTIONS
from .shift import _triton_usable, with_kernels
from .timing import _device_name, _minor_faults, synchronizer, time_interleaved

SHIFT_T = "shiftvit_r2_tiny"
SWIN_T = "swin_tiny_patch4_window7_224"  # Shift-T's attention peer at its FLOPs (timm's name)
DEFAULT_MODELS = (SHIFT_T, "shiftvit_light_tiny", SWIN_T, "resnet50", "convnext_tiny", "poolformer_s24")
# every mixer in Shift-T's place (depths solved to its FLOPs), from the registry of mixer options; the throughput
# default leaves out random mixing (a fixed random matrix over Shift-T's 3,136 stage-1 tokens: a control of what
# mixing learns, not a speed peer), which the solver bench still times
MATCHED_MIXERS = tuple(m for m in MIXER_OPTIONS if m not in ("shift", "random"))


def bench_solver(reference: str = SHIFT_T, img_size: int = 224, mixers: Sequence[str] = (*MATCHED_MIXERS, "random"),
                 ) -> Dict[str, object]:
    """Seconds per ``solve_depths`` call: first (counts a probe model) and repeated (cached)."""
    from ..flops import _CACHE, solve_depths

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


NORM_SUFFIX = "gn_"  # model+gn_triton: the GPU norm kernel; model+triton: the GPU shift kernel
# model+compiled: that model through torch.compile, whole, beside the others eager; model+compiled_blocks: its
# blocks compiled one by one (train.compile_scope=blocks)
COMPILED_SUFFIXES = {"compiled": MODEL_SCOPE, "compiled_blocks": BLOCKS_SCOPE}


def parse_kernels(spec: str) -> Tuple[str, Dict[str, str]]:
    """``model+triton+gn_triton`` -> (``model``, {"shift": "triton", "norm": "triton"}): the GPU shift kernel
    (``ops.GPU_KERNELS``) and norm kernel (``gn_`` + ``ops.GPU_NORM_KERNELS``) a benchmark runs that model with.
    ``+compiled`` is not a kernel: ``bench_throughput`` takes it off first (``split_compiled``)."""
    name, *suffixes = spec.split("+")
    kernels: Dict[str, str] = {}
    for suffix in suffixes:
        if suffix.startswith(NORM_SUFFIX) and suffix[len(NORM_SUFFIX):] in GPU_NORM_KERNELS:
            kernels["norm"] = suffix[len(NORM_SUFFIX):]
        elif suffix in GPU_KERNELS:
            kernels["shift"] = suffix
        else:
            choices = [*GPU_KERNELS, *(NORM_SUFFIX + k for k in GPU_NORM_KERNELS), *COMPILED_SUFFIXES]
            raise ValueError(f"{spec!r}: suffix {suffix!r} is not one of: {', '.join(choices)}")
    return name, kernels


def split_compiled(spec: str) -> Tuple[str, Optional[str]]:
    """``model+triton+compiled`` -> (``model+triton``, ``"model"``): the compile scope of this one model, None
    where it runs eager, so that one run can time a model compiled and eager, interleaved."""
    name, *suffixes = spec.split("+")
    scopes = [COMPILED_SUFFIXES[p] for p in suffixes if p in COMPILED_SUFFIXES]
    return "+".join([name, *(p for p in suffixes if p not in COMPILED_SUFFIXES)]), (scopes[-1] if scopes else None)


_MODEL_SPEC = re.compile(r"([^\[\]]+)(?:\[([^\[\]]*)\])?")  # name or name[mixer]


def models_problem(specs: Sequence[str]) -> Optional[str]:
    """The first reason one of ``bench throughput``'s model specs (``name[mixer]+kernel+compiled``) cannot be
    built, or None: a kernel suffix that is not one, then ``model_problem``."""
    try:
        names = [parse_kernels(split_compiled(spec)[0])[0] for spec in specs]
    except ValueError as e:  # parse_kernels names the choices
        return str(e)
    return next((p for p in map(model_problem, names) if p), None)


def model_problem(spec: str, mixer: bool = True) -> Optional[str]:
    """None when ``spec`` (``name`` or, with ``mixer``, ``name[mixer]``; kernel suffixes taken off) names a model
    ``_build`` can make, else why not, with the choices: checked before any model is built, so that a typo in the
    fifth model of a list is refused at once instead of as a traceback after the first four were built."""
    import timm

    import shiftvit.models  # noqa: F401  (registers the models with timm)

    from ..models.mixers import MIXERS

    parsed = _MODEL_SPEC.fullmatch(spec)
    if parsed is None or (parsed.group(2) is not None and not mixer):
        form = f"NAME or NAME[MIXER], e.g. {SHIFT_T}[attn]" if mixer else f"a timm model name, e.g. {SHIFT_T}"
        return f"model {spec!r} is not {form}"
    name, mixer_name = parsed.groups()
    shiftvits = timm.list_models("shiftvit*")
    if not timm.is_model(name):
        return (f"unknown model {name!r}; ShiftViT models: {', '.join(shiftvits)}; other timm models: "
                "timm.list_models()")
    if mixer_name is not None and name not in shiftvits:
        return f"model {spec!r}: a [mixer] goes with a ShiftViT model only: {', '.join(shiftvits)}"
    if mixer_name is not None and mixer_name not in MIXERS:
        return f"model {spec!r}: unknown mixer {mixer_name!r}; choose one of: {', '.join(MIXERS)}"
    return None


def _build(spec: str, img_size: int):
    """``name`` or ``name[mixer]`` (a ShiftViT with that mixer, depths solved to the name's FLOPs)."""
    import timm

    import shiftvit.models  # noqa: F401  (registers the models with timm)

    from ..flops import count, solve_depths

    kwargs: Dict[str, object] = {}
    name, mixer = _MODEL_SPEC.fullmatch(spec).groups()
    if mixer is not None:
        kwargs = dict(mixer=mixer, depths=solve_depths(name, img_size, mixer=mixer).depths)
    cost = count(name, img_size, **kwargs)  # count() passes img_size on to ShiftViT models itself
    if name.startswith("shiftvit"):
        kwargs["img_size"] = img_size
    return timm.create_model(name, **kwargs), cost


def training_step(model: torch.nn.Module, forward: Callable, x: torch.Tensor, autocast,
                  scaler: torch.amp.GradScaler) -> Callable[[], None]:
    """One training step of ``model`` (called through ``forward``: itself, or compiled) on the batch ``x``: AdamW,
    cross-entropy on random labels, under ``autocast``, the loss scaled by ``scaler`` (enabled for fp16)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    target = torch.randint(0, model.num_classes, (x.shape[0],), device=x.device)

    def call() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = torch.nn.functional.cross_entropy(forward(x), target)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return call


def bench_throughput(models: Sequence[str], batch_size: int = 64, img_size: int = 224, repeats: int = 5,
                     steps: int = 3, warmup: int = 2, device: str = "cpu", channels_last: bool = False,
                     compile: bool = False, train: bool = True, amp: str = "none",
                     compile_mode: str = "default", evaluate: bool = True) -> Dict[str, object]:
    """Images/s in eval (no grad) and in training (forward + backward + AdamW step); for each model the
    minimum and median over ``repeats`` rounds of ``steps`` batches, after ``warmup`` batches (at least one,
    whose time is kept: ``train_first_s``, a compiled model's compilation).
    ``amp`` runs the forward passes under autocast (bf16 or fp16, as ``run.py``'s ``train.amp``).

    The rounds are interleaved: every model runs once in round 1, then once in round 2, and so on, so a drift of
    the machine (clocks, temperature, other load) touches every model alike; timed one model after another, a
    drift can put a model that does strictly less work behind one that does more."""
    from ..compiling import compile_model

    dev = torch.device(device)
    autocast = autocast_for(dev, amp)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(batch_size, 3, img_size, img_size, device=dev).contiguous(memory_format=fmt)
    scaler = torch.amp.GradScaler(dev.type, enabled=amp == "fp16")
    rows: Dict[str, Dict[str, object]] = {}
    built: Dict[str, Tuple[torch.nn.Module, Callable, Dict[str, str]]] = {}
    any_compiled = compile
    problem = models_problem(models)  # every name checked before the first model is built (minutes at 224 px)
    if problem:
        raise ValueError(problem)
    for spec in models:
        plain, compiled = split_compiled(spec)
        any_compiled = any_compiled or compiled is not None
        name, kernels = parse_kernels(plain)
        model, cost = _build(name, img_size)
        model = model.to(dev, memory_format=fmt)
        forward = compile_model(model, compile_mode, compiled or MODEL_SCOPE) if compile or compiled else model
        built[spec] = (model, forward, kernels)
        rows[spec] = {"macs": cost.total_macs, "params": cost.total_params}

    sync = synchronizer(dev)
    first: Dict[str, float] = {}

    def interleaved(calls: Dict[str, Callable[[], object]]) -> Dict[str, List[float]]:
        for spec, call in calls.items():  # warm-up batches (compilation, autotuning, allocator) outside the rounds
            start = time.perf_counter()  # the first batch: a compiled model's time to compile
            call()
            sync()
            first[spec] = time.perf_counter() - start
            for _ in range(warmup - 1):
                call()

        def batches(call: Callable[[], object]) -> Callable[[], None]:
            return lambda: [call() for _ in range(steps)]

        times = time_interleaved({spec: batches(call) for spec, call in calls.items()}, repeats, warmup=0,
                                 device=dev)
        return {spec: [steps * batch_size / t for t in ts] for spec, ts in times.items()}

    def infer(forward: Callable) -> Callable[[], None]:
        def call() -> None:
            with torch.no_grad(), autocast:
                forward(x)
        return call

    def kernel_of(spec: str, call: Callable[[], None]) -> Callable[[], object]:
        return with_kernels(call, **built[spec][2])

    if evaluate:
        for model, _, _ in built.values():
            model.eval()
        for spec, measured in interleaved({s: kernel_of(s, infer(f)) for s, (_, f, _) in built.items()}).items():
            rows[spec].update(eval_median=statistics.median(measured), eval_min=min(measured), eval_first_s=first[spec])
    if train:
        for model, _, _ in built.values():
            model.train()
        calls = {s: kernel_of(s, training_step(m, f, x, autocast, scaler)) for s, (m, f, _) in built.items()}
        for spec, measured in interleaved(calls).items():
            rows[spec].update(train_median=statistics.median(measured), train_min=min(measured),
                              train_first_s=first[spec])
    base = rows.get(models[0], {})
    for row in rows.values():
        for key in ("eval_median", "train_median"):
            if key in row and base.get(key):
                row[key.replace("median", "ratio")] = row[key] / base[key]
    auto = any(kernels.get("shift") == "auto" for _, _, kernels in built.values())
    return dict(benchmark="throughput", batch_size=batch_size, img_size=img_size, repeats=repeats, steps=steps,
                device=_device_name(dev), channels_last=channels_last, compile=compile,
                compile_mode=compile_mode if any_compiled else None, amp=amp, interleaved=True,
                threads=torch.get_num_threads(), torch=torch.__version__, reference=models[0], rows=rows,
                **({"shift_auto_choices": auto_shift_choices()} if auto else {}))


def _print_throughput(r: Dict[str, object]) -> None:
    print(f"throughput, batch {r['batch_size']}, {r['img_size']} px, {r['device']}, {r['threads']} threads, "
          f"amp={r['amp']}, channels_last={r['channels_last']}, compile={r['compile']}; "
          f"ratios to {r['reference']} (median)")
    print(f"{'model':<40}{'GMACs':>7}{'params M':>9}{'eval img/s':>11}{'(min)':>8}{'ratio':>7}"
          f"{'train img/s':>12}{'(min)':>8}{'ratio':>7}{'1st step s':>11}")
    for name, row in r["rows"].items():  # the first training step: a compiled model's compilation
        train = (f"{row['train_median']:>12.1f}{row['train_min']:>8.1f}{row.get('train_ratio', float('nan')):>7.2f}"
                 f"{row['train_first_s']:>11.1f}" if "train_median" in row else "")
        evaluated = (f"{row['eval_median']:>11.1f}{row['eval_min']:>8.1f}{row.get('eval_ratio', float('nan')):>7.2f}"
                     if "eval_median" in row else f"{'-':>11}{'-':>8}{'-':>7}")
        print(f"{name:<40}{row['macs'] / 1e9:>7.2f}{row['params'] / 1e6:>9.2f}{evaluated}{train}")


class OfficialShift(torch.nn.Module):
    """The official shift, rebuilt for the baseline: zeros_like + five slice copies, autograd through them."""

    def __init__(self, g: int):
        super().__init__()
        self.g = g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return shift_official(x, self.g)


def official_structure(model: torch.nn.Module) -> torch.nn.Module:
    """The same weights in the official implementation's structure: NCHW 1x1 convs, GroupNorm, and the
    official shift in place of ours (the blocks are otherwise identical by construction)."""
    from ..models.mixers import ShiftMixer

    for module in model.modules():
        if hasattr(module, "token_mixer") and isinstance(module.token_mixer, ShiftMixer):
            if module.token_mixer.shift_size != 1:
                raise ValueError("the official structure moves channels one pixel; build the model with shift_size=1")
            module.token_mixer = OfficialShift(module.token_mixer.channels_per_direction)
    return model


def bench_fast(model_name: str = SHIFT_T, batch_size: int = 64, img_size: int = 224,
               repeats: int = 3, device: str = "cpu", amp: str = "none") -> Dict[str, object]:
    """Inference images/s of Shift-T: official structure vs ours (NCHW) vs ours (channels-last), same weights,
    each under the same autocast (``amp``)."""
    import timm

    import shiftvit.models  # noqa: F401  (registers the models with timm)

    dev = torch.device(device)
    autocast = autocast_for(dev, amp)  # an unknown amp is refused before any model is built
    official = official_structure(timm.create_model(model_name, img_size=img_size)).eval().to(dev)

    def same_weights(memory_format: torch.memory_format) -> torch.nn.Module:
        model = timm.create_model(model_name, img_size=img_size).eval()
        model.load_state_dict(official.state_dict())
        return model.to(dev, memory_format=memory_format)

    ours, ours_cl = same_weights(torch.contiguous_format), same_weights(torch.channels_last)
    x = torch.randn(batch_size, 3, img_size, img_size, device=dev)
    x_cl = x.contiguous(memory_format=torch.channels_last)

    def under_autocast(model: torch.nn.Module, inputs: torch.Tensor) -> Callable[[], torch.Tensor]:
        def call() -> torch.Tensor:
            with autocast:
                return model(inputs).float()
        return call

    fns = {"official": under_autocast(official, x), "ours_nchw": under_autocast(ours, x),
           "ours_channels_last": under_autocast(ours_cl, x_cl)}
    if _triton_usable(dev):  # the same models with the opt-in Triton kernels: the shift, and the shift and norm
        for layout in ("nchw", "channels_last"):
            fns[f"ours_{layout}+triton"] = with_kernels(fns[f"ours_{layout}"], shift="triton")
            fns[f"ours_{layout}+triton+gn_triton"] = with_kernels(fns[f"ours_{layout}"], shift="triton", norm="triton")
            fns[f"ours_{layout}+auto"] = with_kernels(fns[f"ours_{layout}"], shift="auto")
    if dev.type == "cuda":  # the norm on the memory as stored: for channels-last only (NCHW is native's own)
        fns["ours_channels_last+gn_as_stored"] = with_kernels(fns["ours_channels_last"], norm="as_stored")
        if _triton_usable(dev):
            fns["ours_channels_last+triton+gn_as_stored"] = with_kernels(fns["ours_channels_last"], shift="triton",
                                                                         norm="as_stored")
    with torch.no_grad():
        reference = fns["official"]()  # under the same autocast
        diffs = {k: (fn() - reference).abs().max().item() for k, fn in fns.items() if k != "official"}
        times = time_interleaved(fns, repeats, warmup=1, device=dev)
        faults = {k: _minor_faults(fn) for k, fn in fns.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    return dict(benchmark="fast", model=model_name, batch_size=batch_size, img_size=img_size, repeats=repeats,
                device=_device_name(dev), amp=amp,
                threads=torch.get_num_threads(), max_abs_diff=diffs, minor_page_faults_per_pass=faults,
                images_per_s={k: batch_size / v for k, v in med.items()},
                speedup={k: med["official"] / v for k, v in med.items()})


def _print_fast(r: Dict[str, object]) -> None:
    print(f"{r['model']} eval, batch {r['batch_size']}, {r['img_size']} px, amp={r.get('amp', 'none')}, {r['device']}, "
          f"{r['threads']} threads (median of {r['repeats']})")
    for k, v in r["images_per_s"].items():
        diff = r["max_abs_diff"].get(k, 0.0)
        print(f"  {k:<38}{v:>9.1f} img/s  x{r['speedup'][k]:.2f}  max|diff| {diff:.2e}  "
              f"page faults/pass {r['minor_page_faults_per_pass'][k]}")
