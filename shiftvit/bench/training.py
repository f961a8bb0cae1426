"""What the framework costs: training images/s through ``run.py`` against a loop written by hand around the same
model and loader, and ``run.py``'s start-up against ``import torch`` alone."""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

ROOT = Path(__file__).resolve().parents[2]  # the checkout: run.py lives there


def bare_loop_images_per_s(model_name: str = "shiftvit_nano", epochs: int = 3, batch_size: int = 64,
                           seed: int = 0, device: str = "cpu", data: str = "digits",
                           data_options: Optional[Dict[str, Any]] = None, compile: bool = False,
                           compile_mode: str = "default", deterministic: bool = True) -> List[float]:
    """What a researcher would write by hand: same model, same data (held on the GPU when there is one, as
    anyone would for a data set this small), AdamW, cross-entropy; ``compile``: the model through
    ``torch.compile``, as ``run.py`` compiles it; ``deterministic``: the same deterministic-algorithm settings
    as ``run.py``'s ``train.deterministic`` (on a GPU they pick slower cuDNN and cuBLAS kernels, which is the
    settings' cost, not the framework's)."""
    import timm

    import shiftvit.models  # noqa: F401  (registers the models with timm)

    from ..data import build_data, make_loaders
    from ..engine import seed_everything

    seed_everything(seed, deterministic)
    dev = torch.device(device)
    bundle = build_data(data, **(data_options or {}))
    train, _ = make_loaders(bundle, batch_size, seed, device=dev if dev.type == "cuda" else None)
    model = timm.create_model(model_name, num_classes=bundle.num_classes, in_chans=bundle.in_chans).to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    model.train()
    forward = torch.compile(model, mode=compile_mode) if compile else model
    rates = []
    for epoch in range(epochs):
        train.sampler.set_epoch(epoch)
        seen, start = 0, time.perf_counter()
        for x, y in train:
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            loss = criterion(forward(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += x.shape[0]
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        rates.append(seen / (time.perf_counter() - start))
    return rates


def bench_overhead(epochs: int = 3, model_name: str = "shiftvit_nano", device: str = "cpu", data: str = "digits",
                   batch_size: int = 64, data_options: Optional[Dict[str, Any]] = None, compile: bool = False,
                   compile_mode: str = "default", startup: bool = True,
                   deterministic: bool = True, startup_repeats: int = 3) -> Dict[str, object]:
    """Training images/s through ``run.py`` (its own per-epoch measurement) vs the bare loop, and start-up; with
    ``compile`` both sides compile the model (``train.compile=true``). The median epoch is compared, so the
    first epoch's compilation stays out of both numbers from three epochs on. Start-up: the fastest of
    ``startup_repeats`` starts of each."""
    import subprocess
    import sys
    import tempfile

    from ..records import read_metrics

    data_options = dict(data_options or {})
    bare = bare_loop_images_per_s(model_name, epochs, batch_size, device=device, data=data,
                                  data_options=data_options, compile=compile, compile_mode=compile_mode,
                                  deterministic=deterministic)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(ROOT / "run.py"), f"model={model_name}", f"data={data}", f"train.epochs={epochs}",
               f"train.batch_size={batch_size}", f"train.device={device}", "match=none", "logger=none",
               "train.ema=false", f"train.compile={str(compile).lower()}", f"train.compile_mode={compile_mode}",
               f"train.deterministic={str(deterministic).lower()}",
               *(f"data.{k}={v}" for k, v in data_options.items()), f"hydra.run.dir={tmp}/run"]
        subprocess.run(cmd, check=True, capture_output=True, cwd=tmp)
        framework = [r["train_images_per_s"] for r in read_metrics(Path(tmp) / "run")]

    def wall(args: List[str]) -> float:
        times = []
        for _ in range(startup_repeats):
            t0 = time.perf_counter()
            subprocess.run(args, check=True, capture_output=True, cwd=ROOT)
            times.append(time.perf_counter() - t0)
        return min(times)

    result: Dict[str, object] = {}
    if startup:  # seven interpreter starts: a minute where importing torch is slow (a cold GPU machine)
        help_s = wall([sys.executable, str(ROOT / "run.py"), "--help"])
        torch_s = wall([sys.executable, "-c", "import torch"])
        result = dict(help_s=help_s, import_torch_s=torch_s, startup_ratio=help_s / torch_s,
                      startup_repeats=startup_repeats)
    return dict(benchmark="overhead", model=model_name, data=data, data_options=data_options, device=device,
                batch_size=batch_size, epochs=epochs, compile=compile, compile_mode=compile_mode if compile else None,
                deterministic=deterministic,
                threads=torch.get_num_threads(),
                bare_images_per_s=bare, run_py_images_per_s=framework,
                step_rate_ratio=statistics.median(framework) / statistics.median(bare), **result)


def _print_overhead(r: Dict[str, object]) -> None:
    compiled = f"compiled ({r['compile_mode']})" if r.get("compile") else "eager"
    if "deterministic" in r:
        compiled += ", deterministic" if r["deterministic"] else ", not deterministic"
    print(f"training throughput, {r['model']} on {r['data']} {r.get('data_options') or ''}, batch {r['batch_size']}, "
          f"{r['device']}, {compiled}, {r['epochs']} epochs, {r['threads']} threads (median epoch)")
    print(f"  bare PyTorch loop      {statistics.median(r['bare_images_per_s']):>9.1f} images/s")
    print(f"  run.py (engine)        {statistics.median(r['run_py_images_per_s']):>9.1f} images/s")
    print(f"  ratio run.py / bare    {r['step_rate_ratio']:>9.3f}")
    if "help_s" in r:
        print(f"start-up: run.py --help {r['help_s']:.2f} s, python -c 'import torch' {r['import_torch_s']:.2f} s, "
              f"ratio {r['startup_ratio']:.2f}")
