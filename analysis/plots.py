"""Figures for the ablations, in one consistent style; each function saves PNG and SVG and returns the paths.

Headless: the Agg backend is selected here, so plots work on servers and in CI.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .stats import DISPLAY, summarize  # noqa: E402

STYLE = {"figure.dpi": 110, "savefig.dpi": 130, "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
         "axes.spines.right": False, "font.size": 10, "legend.frameon": False}
MIXER_ORDER = ["shift", "attn", "global_attn", "mlp", "dwconv", "pool", "identity", "random"]
FORMATS = ("png", "svg")


def mixer_color(mixer: str) -> str:
    palette = plt.get_cmap("tab10").colors
    index = MIXER_ORDER.index(mixer) if mixer in MIXER_ORDER else len(MIXER_ORDER) + hash(mixer) % 2
    return matplotlib.colors.to_hex(palette[index % len(palette)])


def _save(fig, out_dir: Path, name: str) -> List[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.{fmt}" for fmt in FORMATS]
    for path in paths:
        fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return paths


def _ordered(mixers: Sequence[str]) -> List[str]:
    return sorted(set(mixers), key=lambda m: (MIXER_ORDER.index(m) if m in MIXER_ORDER else 99, m))


def plot_mixers(runs: pd.DataFrame, out_dir: Path, metric: str = "val_top1") -> List[Path]:
    """Top-1 by mixer at matched FLOPs: mean with 95% CI and every seed as a dot."""
    with plt.rc_context(STYLE):
        table = summarize(runs, by=["mixer"], metric=metric).set_index("mixer")
        order = _ordered(table.index)
        fig, ax = plt.subplots(figsize=(1.1 * len(order) + 2, 3.6))
        for i, mixer in enumerate(order):
            row = table.loc[mixer]
            err = None if np.isnan(row["ci_high"]) else [[row["mean"] - row["ci_low"]], [row["ci_high"] - row["mean"]]]
            ax.bar(i, row["mean"], color=mixer_color(mixer), alpha=0.75, yerr=err, capsize=4)
            seeds = runs.loc[runs["mixer"] == mixer, metric]
            ax.scatter(np.full(len(seeds), i) + np.linspace(-0.15, 0.15, len(seeds)), seeds, s=12, color="black",
                       zorder=3)
        ax.set_xticks(range(len(order)), [DISPLAY.get(m, m) for m in order], rotation=20)
        low = runs[metric].min()
        ax.set_ylim(max(0, low - 0.2 * (100 - low) - 1), min(100, runs[metric].max() + 1))
        ax.set_ylabel(f"{metric} (%)")
        matched = "match" in runs and set(runs["match"]) == {"flops"}
        ax.set_title(f"Top-1 by token mixer{' at matched FLOPs' if matched else ''} (mean, 95% CI, seeds)")
        return _save(fig, out_dir, "mixers")


def plot_param_curve(runs: pd.DataFrame, out_dir: Path, param: str, name: str, metric: str = "val_top1",
                     annotate_depths: bool = False) -> List[Path]:
    """Top-1 against a numeric knob (gamma_float, tau), mean with 95% CI; optionally the solved depths."""
    with plt.rc_context(STYLE):
        table = summarize(runs, by=[param], metric=metric).sort_values(param)
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.errorbar(table[param], table["mean"], yerr=[table["mean"] - table["ci_low"],
                    table["ci_high"] - table["mean"]], marker="o", capsize=4, color=mixer_color("shift"))
        if annotate_depths:
            depths = runs.groupby(param)["depths"].first()
            for x, y in zip(table[param], table["mean"]):
                ax.annotate(f"d={depths.loc[x]}", (x, y), textcoords="offset points", xytext=(4, 6), fontsize=8)
        ax.set_xlabel({"gamma_float": "shift ratio γ (per direction)", "tau": "MLP ratio τ"}.get(param, param))
        ax.set_ylabel(f"{metric} (%)")
        ax.set_title(f"Top-1 vs {param.replace('_float', '')} (mean, 95% CI)")
        return _save(fig, out_dir, name)


def _pareto(points: np.ndarray, larger_x_better: bool) -> np.ndarray:
    order = np.argsort(-points[:, 0] if larger_x_better else points[:, 0])
    front, best = [], -np.inf
    for i in order:
        if points[i, 1] > best:
            front.append(i)
            best = points[i, 1]
    return np.array(front, dtype=int)


def plot_tradeoff(runs: pd.DataFrame, out_dir: Path, x: str, name: str, metric: str = "val_top1") -> List[Path]:
    """Accuracy against MACs (smaller is better) or measured images/s (larger is better), Pareto front."""
    larger_better = "images_per_s" in x
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        means = runs.groupby("mixer").agg(x=(x, "mean"), y=(metric, "mean")).dropna()
        for mixer, row in means.iterrows():
            sub = runs[runs["mixer"] == mixer]
            ax.scatter(sub[x], sub[metric], s=10, alpha=0.4, color=mixer_color(mixer))
            ax.scatter(row["x"], row["y"], s=60, color=mixer_color(mixer), label=DISPLAY.get(mixer, mixer),
                       edgecolor="black")
        if len(means) > 1:
            front = means.iloc[_pareto(means[["x", "y"]].to_numpy(), larger_better)].sort_values("x")
            ax.plot(front["x"], front["y"], "--", color="gray", lw=1, label="Pareto front")
        ax.set_xlabel({"macs": "MACs", "train_images_per_s": "train images/s (measured)",
                       "eval_images_per_s": "eval images/s (measured)"}.get(x, x))
        ax.set_ylabel(f"{metric} (%)")
        ax.legend(fontsize=8)
        ax.set_title(f"Accuracy vs {'measured speed' if larger_better else 'FLOPs'}")
        return _save(fig, out_dir, name)


def plot_curves(curves: pd.DataFrame, out_dir: Path, metric: str = "val_top1", by: str = "mixer") -> List[Path]:
    """Per-epoch ``metric``: mean over seeds with min-max band, one line per mixer."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        data = curves[curves["metric"] == metric]
        for key, group in data.groupby(by):
            stats = group.groupby("epoch")["value"].agg(["mean", "min", "max"])
            color = mixer_color(key) if by == "mixer" else None
            ax.plot(stats.index + 1, stats["mean"], label=DISPLAY.get(key, str(key)), color=color)
            ax.fill_between(stats.index + 1, stats["min"], stats["max"], alpha=0.15, color=color)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.legend(fontsize=8)
        ax.set_title(f"Training curves ({metric}, mean and range over seeds)")
        return _save(fig, out_dir, f"curves_{metric}")


def plot_flop_breakdown(costs: Dict[str, Dict[str, float]], out_dir: Path, name: str = "flop_breakdown"
                        ) -> List[Path]:
    """Stacked MACs per component (mixer, MLP, the rest) for each model: where the compute goes."""
    parts = [("mixer", "token mixer"), ("mlp", "MLP"), ("rest", "embed + merge + head")]
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(1.2 * len(costs) + 2, 3.6))
        bottom = np.zeros(len(costs))
        for key, label in parts:
            values = np.array([c.get(key, 0.0) for c in costs.values()]) / 1e9
            ax.bar(range(len(costs)), values, bottom=bottom, label=label)
            bottom += values
        ax.set_xticks(range(len(costs)), list(costs), rotation=20)
        ax.set_ylabel("GMACs")
        ax.legend(fontsize=8)
        ax.set_title("Where the FLOPs go")
        return _save(fig, out_dir, name)


def breakdown_from_runs(runs: pd.DataFrame) -> Dict[str, Dict[str, float]]:
    """Mean MACs per component and mixer, from the run records."""
    out: Dict[str, Dict[str, float]] = {}
    for mixer, group in runs.groupby("mixer"):
        mixer_macs = float(group.get("macs_mixer", pd.Series([0.0])).mean())
        mlp = float(group.get("macs_mlp", pd.Series([0.0])).mean())
        out[DISPLAY.get(mixer, mixer)] = {"mixer": mixer_macs, "mlp": mlp,
                                          "rest": float(group["macs"].mean()) - mixer_macs - mlp}
    return out


def all_figures(runs: pd.DataFrame, curves: Optional[pd.DataFrame], out_dir: Path) -> Dict[str, List[Path]]:
    """Every figure the data supports (a gamma plot needs several gammas, and so on)."""
    figures: Dict[str, List[Path]] = {}
    if runs.empty:
        return figures
    if runs["mixer"].nunique() > 1:
        figures["mixers"] = plot_mixers(runs, out_dir)
    shift = runs[runs["mixer"] == "shift"]
    if shift["gamma_float"].nunique() > 1:
        figures["gamma"] = plot_param_curve(shift, out_dir, "gamma_float", "gamma")
    if runs["tau"].nunique() > 1:
        figures["tau"] = plot_param_curve(runs, out_dir, "tau", "tau_depth", annotate_depths=True)
    figures["acc_vs_macs"] = plot_tradeoff(runs, out_dir, "macs", "acc_vs_macs")
    if runs["train_images_per_s"].notna().any():
        figures["acc_vs_speed"] = plot_tradeoff(runs, out_dir, "train_images_per_s", "acc_vs_speed")
    if curves is not None and not curves.empty:
        figures["curves"] = plot_curves(curves, out_dir)
    figures["flops"] = plot_flop_breakdown(breakdown_from_runs(runs), out_dir)
    return figures
