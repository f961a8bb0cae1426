"""The GPU speed targets of issue #16, read off the JSON results of the other benchmarks:
``python -m shiftvit.bench targets DIR [DIR ...]`` prints the README's targets table (one row per target and
measured case, with the file it comes from) and writes it as JSON. ``experiments/gpu_check.sh`` runs it last, so a
GPU run ends with the table it settles.

Every ratio was measured inside one process, except two, whose rows say so: compiled against eager training
from runs of ``bench throughput --compile`` divides two runs (``bench throughput shiftvit_r2_tiny
shiftvit_r2_tiny+compiled`` times both in one, interleaved, as ``gpu_check.sh`` does), and ``bench overhead`` also
divides ``run.py``'s own process by the bare loop's.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Sequence, Tuple

from .models import SWIN_T, split_compiled
from .shift import STAGE1_SHAPE

Result = Dict[str, object]
Case = Tuple[str, float, str]  # (what was measured, the ratio, the file it comes from)


@dataclass(frozen=True)
class Target:
    name: str
    bound: float
    at_least: bool  # True: the ratio must be >= bound; False: <= bound
    cases: Callable[[Sequence[Result]], Iterator[Case]]

    def met(self, ratio: float) -> bool:
        return ratio >= self.bound if self.at_least else ratio <= self.bound


def _of(results: Sequence[Result], benchmark: str) -> Iterator[Result]:
    return (r for r in results if r.get("benchmark") == benchmark)


def _layout(r: Result) -> str:
    return "channels-last" if r.get("channels_last") else "NCHW"


def _shift_cases(results: Sequence[Result]) -> Iterator[Case]:
    for r in _of(results, "shift"):
        if tuple(r["shape"]) != STAGE1_SHAPE:  # the late stages' small tensors are launch-bound: not the target's
            continue
        ratios = r["ratio_to_clone"]
        case = f"{_layout(r)} {r.get('dtype', 'float32')}"
        yield case, ratios["shiftvit"], r["_file"]
        if "shiftvit_triton" in ratios:
            yield f"{case}, Triton kernel", ratios["shiftvit_triton"], r["_file"]
        if "shiftvit_auto" in ratios:
            yield f"{case}, auto (the faster per shape)", ratios["shiftvit_auto"], r["_file"]


def _trained(r: Result) -> str:
    order = "" if r.get("interleaved") else ", models timed one after another"
    return f"{r['amp']}, {_layout(r)}{order}"


def _shift_t_against(peer: Callable[[str], str]) -> Callable[[Sequence[Result]], Iterator[Case]]:
    """Training images/s of Shift-T (and its +kernel variants) over a peer's, in the eager throughput runs."""
    def cases(results: Sequence[Result]) -> Iterator[Case]:
        for r in _of(results, "throughput"):
            rows, reference = r["rows"], str(r["reference"])
            other = rows.get(peer(reference), {})
            if r.get("compile") or r.get("amp") != "bf16" or not r.get("channels_last") or "train_median" not in other:
                continue  # the targets are set for bf16 autocast and channels-last, eager
            for spec, row in rows.items():
                plain, compiled = split_compiled(spec)
                if (plain == reference or plain.startswith(reference + "+")) and not compiled and "train_median" in row:
                    yield f"{spec}, {_trained(r)}", row["train_median"] / other["train_median"], r["_file"]
    return cases


def _compiled_cases(results: Sequence[Result]) -> Iterator[Case]:
    runs = list(_of(results, "throughput"))
    for r in (r for r in runs if r.get("amp") == "bf16" and not r.get("compile")):  # model+compiled beside model
        for spec, row in r["rows"].items():
            plain, compiled = split_compiled(spec)
            eager = r["rows"].get(plain, {})
            if compiled and "train_median" in row and "train_median" in eager:
                yield (f"{spec} ({r['compile_mode']}) ÷ {plain}, {_trained(r)}",
                       row["train_median"] / eager["train_median"], r["_file"])
    for compiled in (r for r in runs if r.get("compile") and r.get("amp") == "bf16"):
        setting = ("amp", "channels_last", "batch_size", "img_size", "device")
        for eager in (r for r in runs if not r.get("compile") and all(r.get(k) == compiled.get(k) for k in setting)):
            reference = str(compiled["reference"])
            new, old = compiled["rows"].get(reference, {}), eager["rows"].get(reference, {})
            if "train_median" in new and "train_median" in old:
                yield (f"{reference} {compiled['compile_mode']}, {_trained(compiled)} (two runs)",
                       new["train_median"] / old["train_median"], f"{compiled['_file']} / {eager['_file']}")


def _inference_cases(results: Sequence[Result]) -> Iterator[Case]:
    for r in _of(results, "fast"):
        for variant, speedup in r["speedup"].items():
            if variant != "official":
                yield f"{variant}, amp={r.get('amp', 'none')}", speedup, r["_file"]


def _overhead_cases(results: Sequence[Result]) -> Iterator[Case]:
    for r in _of(results, "overhead"):
        how = f"compiled ({r['compile_mode']})" if r.get("compile") else "eager"
        if "deterministic" in r:
            how += ", deterministic" if r["deterministic"] else ", not deterministic"
        case = f"{r['model']} on {r['data']}, batch {r['batch_size']}, {how}"
        if "engine_ratio" in r:  # the engine and the bare loop in one process, epochs in turn
            yield f"{case}, engine in the bare loop's process", r["engine_ratio"], r["_file"]
        yield f"{case}, run.py in its own process", r["step_rate_ratio"], r["_file"]


TARGETS = (
    Target("shift forward+backward through `shiftvit.shift` ÷ two clones", 1.5, False, _shift_cases),
    Target("Shift-T training ÷ its identity backbone (bf16, channels-last, eager)", 0.9, True,
           _shift_t_against(lambda t: f"{t}[identity]")),
    Target("Shift-T training ÷ Swin-T (bf16, channels-last, eager)", 1.0, True, _shift_t_against(lambda t: SWIN_T)),
    Target("Shift-T inference ÷ the official structure, same weights", 1.2, True, _inference_cases),
    Target("compiled Shift-T training ÷ eager (bf16)", 1.5, True, _compiled_cases),
    Target("`run.py` training ÷ a bare loop (the target: compiled)", 0.9, True, _overhead_cases),
)


def load_results(dirs: Iterable[Path]) -> List[Result]:
    """Every benchmark JSON in ``dirs`` (not recursive), each tagged with the file it was read from."""
    results = []
    for directory in dirs:
        directory = Path(directory)
        if not directory.is_dir():
            raise SystemExit(f"{directory} is not a directory: give the folder gpu_check.sh wrote (its OUT_DIR)")
        for path in sorted(directory.glob("*.json")):
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError) as e:
                raise SystemExit(f"{path} is not readable JSON ({type(e).__name__}): move it out of {directory} or "
                                 "rerun the benchmark that wrote it") from None
            if isinstance(data, dict) and "benchmark" in data:
                results.append({**data, "_file": str(path)})
    return results


def check_targets(dirs: Iterable[Path]) -> Result:
    results = load_results(dirs)
    rows: List[Dict[str, object]] = []
    for target in TARGETS:
        bound = f"{'≥' if target.at_least else '≤'} {target.bound:g}"
        cases = list(target.cases(results))
        for case, ratio, source in cases:
            rows.append(dict(target=target.name, bound=bound, case=case, ratio=ratio, met=target.met(ratio),
                             source=source))
        if not cases:
            rows.append(dict(target=target.name, bound=bound, case=None, ratio=None, met=None, source=None))
    devices = sorted({str(r.get("device")) for r in results})
    return dict(benchmark="targets", devices=devices, rows=rows)


def _print_targets(r: Result) -> None:
    print(f"issue #16's targets on {', '.join(r['devices']) or 'no results'} (ratios; 'met' compares with the bound)")
    print("| target | bound | case | measured | met | from |")
    print("|---|---|---|---|---|---|")
    for row in r["rows"]:
        if row["ratio"] is None:
            print(f"| {row['target']} | {row['bound']} | – | not measured | – | – |")
        else:
            met = "yes" if row["met"] else "no"
            print(f"| {row['target']} | {row['bound']} | {row['case']} | {row['ratio']:.2f} | {met} "
                  f"| {row['source']} |")

