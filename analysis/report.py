"""``python -m analysis.report SWEEP_DIR [--out DIR]``: a self-contained report of a sweep.

Writes ``report.md`` (figures as files next to it) and ``report.html`` (figures embedded), with the runs used
and the runs skipped (and why), mean +- 95% CI per configuration, the verdict of every comparison against
the treatment mixer (``shift`` by default), and every figure the runs support.
"""
from __future__ import annotations

import argparse
import base64
import html
import sys
import warnings
from pathlib import Path
from typing import Iterable, List, Optional, Tuple

import pandas as pd

from .load import SkippedRun, load_curves, load_runs
from .plots import all_figures
from .stats import DEFAULT_MARGIN, summarize, verdicts

KNOBS = ["mixer", "gamma", "tau", "depths", "norm", "act", "model", "data"]
RUN_COLUMNS = ["job", "mixer", "gamma", "tau", "depths", "norm", "act", "seed", "status", "val_top1", "macs",
               "params", "train_images_per_s"]


def varying(runs: pd.DataFrame) -> List[str]:
    knobs = [k for k in KNOBS if k in runs and runs[k].astype(str).nunique() > 1]
    return knobs or ["mixer"]


def build(sweep_dirs: Iterable[Path], out: Path, treatment: str = "shift", margin: float = DEFAULT_MARGIN,
          metric: str = "val_top1") -> Tuple[Path, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedRun)  # listed in the report instead
        runs = load_runs(list(sweep_dirs))
        curves = load_curves(list(sweep_dirs), warn=False)
    skipped = runs.attrs.get("skipped", [])
    sections: List[Tuple[str, object]] = [("h1", "shiftvit report"),
                                          ("p", f"Sources: {', '.join(str(s) for s in sweep_dirs)}. "
                                                f"{len(runs)} runs used, {len(skipped)} skipped.")]
    if runs.empty:
        sections.append(("p", "No finished runs found: nothing to analyse."))
    else:
        by = varying(runs)
        table = summarize(runs, by=by, metric=metric)
        sections += [("h2", f"{metric} per configuration (mean, 95% CI over seeds)"), ("table", table.round(3))]
        if runs["mixer"].nunique() > 1 and treatment in set(runs["mixer"]):
            v = verdicts(runs, treatment=treatment, metric=metric, margin=margin)
            cols = ["treatment", "control", "n", "mean_diff", "ci95_low", "ci95_high", "p_tost", "verdict"]
            sections += [("h2", f"Verdicts: {treatment} vs each mixer (paired by seed, equivalence margin "
                                f"±{margin} top-1 points, TOST at alpha 0.05)"), ("table", v[cols].round(4))]
        else:
            sections.append(("p", f"No comparison of '{treatment}' against other mixers in these runs."))
        figures = all_figures(runs, curves, out)
        sections.append(("h2", "Figures"))
        sections += [("figure", paths[0]) for paths in figures.values()]
        sections += [("h2", "Runs used"), ("table", runs[[c for c in RUN_COLUMNS if c in runs]])]
    sections.append(("h2", "Runs skipped"))
    sections.append(("table", pd.DataFrame(skipped, columns=["run_dir", "reason"])) if skipped
                    else ("p", "None."))
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text(_markdown(sections, out))
    html_path.write_text(_html(sections))
    return md_path, html_path


def _markdown(sections, out: Path) -> str:
    lines = []
    for kind, value in sections:
        if kind == "h1":
            lines.append(f"# {value}\n")
        elif kind == "h2":
            lines.append(f"## {value}\n")
        elif kind == "p":
            lines.append(f"{value}\n")
        elif kind == "table":
            lines.append(_md_table(value) + "\n")
        elif kind == "figure":
            lines.append(f"![{Path(value).stem}]({Path(value).relative_to(out)})\n")
    return "\n".join(lines)


def _md_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "(empty)"
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "---|" * len(df.columns)
    body = ["| " + " | ".join("" if pd.isna(v) else str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def _html(sections) -> str:
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>shiftvit report</title><style>"
             "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;"
             "font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}img{max-width:100%}</style></head><body>"]
    for kind, value in sections:
        if kind in ("h1", "h2"):
            parts.append(f"<{kind}>{html.escape(str(value))}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{html.escape(str(value))}</p>")
        elif kind == "table":
            parts.append(value.to_html(index=False, na_rep=""))
        elif kind == "figure":
            data = base64.b64encode(Path(value).read_bytes()).decode()
            parts.append(f"<p><img alt='{html.escape(Path(value).stem)}' src='data:image/png;base64,{data}'></p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def main(argv: Optional[Iterable[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweeps", nargs="+", type=Path, help="sweep or run directories (e.g. multirun/<sweep>)")
    p.add_argument("--out", type=Path, default=None, help="output directory (default: <first sweep>/report)")
    p.add_argument("--treatment", default="shift", help="the mixer compared against every other (default shift)")
    p.add_argument("--margin", type=float, default=DEFAULT_MARGIN, help="equivalence margin, top-1 points")
    p.add_argument("--metric", default="val_top1")
    args = p.parse_args(argv)
    missing = [s for s in args.sweeps if not s.exists()]
    if missing:
        print(f"error: {missing[0]} does not exist", file=sys.stderr)
        return 2
    md, page = build(args.sweeps, args.out or args.sweeps[0] / "report", args.treatment, args.margin, args.metric)
    print(f"wrote {md}\nwrote {page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
