"""Figures per arm, in one style: ``figure_*`` build a matplotlib Figure, ``plot_*`` save it as PNG and SVG and
return the paths; ``build_figures`` makes every figure the runs support, ``save_figures`` saves them.

Conventions, the same in every figure: a colour means a mixer (``mixer_color``); black dots are single runs;
a black dotted line is the 100 % ceiling and a grey dashed line the better raw-pixel baseline of the dataset
(``headroom``); MACs read in M MACs and speed in images/s. A title or legend names only what is drawn: no CI
where an arm has one run, no Pareto front unless it has two points. Headless: the Agg backend is selected here.
"""
from __future__ import annotations

import zlib
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator, ScalarFormatter  # noqa: E402

from shiftvit.records import FAILED_STATUSES  # noqa: E402

from .arms import DISPLAY, MIXER_STYLE  # noqa: E402
from .headroom import CEILING, Testbed, testbeds_of  # noqa: E402
from .stats import CONFIDENCE_TEXT, DEFAULT_METRIC, FACTORS, factor_column, finished_values, summarize  # noqa: E402

STYLE = {"figure.dpi": 110, "savefig.dpi": 130, "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
         "axes.spines.right": False, "font.size": 10, "legend.frameon": False, "svg.fonttype": "none",
         "axes.formatter.useoffset": False,
         "svg.hashsalt": "shiftvit"}  # fixed element ids: a figure redrawn from the same records is the same file
MIXER_COLORS = {mixer: colour for mixer, (_, colour) in MIXER_STYLE.items()}
SPARE_COLORS = ["#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"]
RUN_DOT = {"s": 14, "color": "black", "zorder": 3}
CEILING_LINE = {"color": "black", "ls": ":", "lw": 1}
BASELINE_LINE = {"color": "0.45", "ls": "--", "lw": 1}
MARKERS = ["o", "s", "^", "D", "v", "P", "X"]
LINESTYLES = ["-", "--", "-.", ":"]
FORMATS = ("png", "svg")
PARETO_LABEL = "Pareto front (arm means)"
AXIS_LABELS = {"macs": "M MACs per image", "train_images_per_s": "train images/s (measured)",
               "eval_images_per_s": "eval images/s (measured)", "gamma_float": "shift ratio γ (per direction)",
               "tau": "MLP ratio τ"}
AXIS_SCALE = {"macs": 1e-6}


def mixer_color(mixer: str) -> str:
    return MIXER_COLORS.get(mixer) or SPARE_COLORS[zlib.crc32(str(mixer).encode()) % len(SPARE_COLORS)]


def _arm_styles(runs: pd.DataFrame) -> Dict[str, Dict[str, str]]:
    """Colour by mixer; arms of one mixer told apart by marker and line style."""
    styles, seen = {}, {}
    for arm, mixer in runs.groupby("arm", sort=False)["mixer"].first().items():
        k = seen.get(mixer, 0)
        seen[mixer] = k + 1
        styles[arm] = {"color": mixer_color(mixer), "marker": MARKERS[k % len(MARKERS)],
                       "ls": LINESTYLES[k % len(LINESTYLES)]}
    return styles


def _save(fig: Figure, out_dir: Path, name: str) -> List[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.{fmt}" for fmt in FORMATS]
    with plt.rc_context(STYLE):  # the savefig.* and svg.* settings act when the file is written
        for path in paths:
            # no creation date in an SVG either, so regenerated figures change only where the data did
            fig.savefig(path, bbox_inches="tight", **({"metadata": {"Date": None}} if path.suffix == ".svg" else {}))
    plt.close(fig)
    return paths


def _references(ax, runs: pd.DataFrame, testbeds: Optional[Dict[str, Testbed]]) -> None:
    """The ceiling, and per dataset the better raw-pixel baseline, as horizontal reference lines."""
    ax.axhline(CEILING, label=f"{CEILING:g} % (ceiling)", **CEILING_LINE)
    if not testbeds or "data_config" not in runs:
        return
    beds = [testbeds[k] for k in runs["data_config"].unique() if k in testbeds]
    for i, bed in enumerate(beds):
        best = bed.best_baseline
        if best is not None:
            where = f"{bed.data}, " if len(beds) > 1 else ""
            ax.axhline(best[1], label=f"raw-pixel {best[0]} ({where}{best[1]:.2f} %)",
                       **{**BASELINE_LINE, "ls": LINESTYLES[(i + 1) % len(LINESTYLES)]})


def _legend(ax) -> None:
    """Outside the axes, on the right: it never hides a point or a reference line."""
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _plain_axes(ax) -> None:
    for axis in (ax.xaxis, ax.yaxis):
        if isinstance(axis.get_major_formatter(), ScalarFormatter):
            axis.get_major_formatter().set_useOffset(False)
            axis.get_major_formatter().set_scientific(False)


def figure_arms(runs: pd.DataFrame, testbeds: Optional[Dict[str, Testbed]] = None, metric: str = DEFAULT_METRIC
                ) -> Figure:
    """Per arm: every finished run as a dot and the mean with its 95 % CI (arms with 2 or more finished runs).
    Runs that did not finish are marked apart when they recorded an accuracy; they are not in the mean."""
    table = summarize(runs, metric=metric).set_index("arm")
    styles = _arm_styles(runs)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(1.3 * len(table) + 2.5, 3.8))
        drew_ci = drew_failed = drew_dots = False
        for i, (arm, row) in enumerate(table.iterrows()):
            values = finished_values(runs, arm, metric).to_numpy()
            if len(values):
                ax.scatter(i + np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else [i], values,
                           label=None if drew_dots else "finished run", **RUN_DOT)
                drew_dots = True
            failed = runs[(runs["arm"] == arm) & runs["status"].isin(FAILED_STATUSES)]
            failed_values = pd.to_numeric(failed[metric], errors="coerce").dropna()
            if len(failed_values):
                ax.scatter([i + 0.25] * len(failed_values), failed_values, marker="x", color="black", s=24,
                           label=None if drew_failed else "diverged/failed/interrupted (not in the mean)")
                drew_failed = True
            if row["n"] >= 2:
                ax.errorbar(i + 0.3, row["mean"], yerr=[[row["mean"] - row["ci_low"]], [row["ci_high"] - row["mean"]]],
                            fmt=styles[arm]["marker"], color=styles[arm]["color"], capsize=4, ms=7,
                            label=None if drew_ci else f"mean, {CONFIDENCE_TEXT} CI over seeds")
                drew_ci = True
        _references(ax, runs, testbeds)
        ax.set_xticks(range(len(table)), [a.replace(" ", "\n") for a in table.index], fontsize=8)
        for tick, arm in zip(ax.get_xticklabels(), table.index):
            tick.set_color(styles[arm]["color"])
        ax.set_ylabel(f"{metric} (%)")
        _plain_axes(ax)
        what = f"mean and {CONFIDENCE_TEXT} CI over finished seeds, dots: runs" if drew_ci else \
            "one finished run or fewer per arm (no CI), dots: runs"
        ax.set_title(f"{metric} per arm ({what})", fontsize=9)
        _legend(ax)
        return fig


def figure_factor(runs: pd.DataFrame, factor: str, testbeds: Optional[Dict[str, Testbed]] = None,
                  metric: str = DEFAULT_METRIC, annotate_depths: bool = False) -> Figure:
    """``metric`` against a numeric knob (γ, τ, a mixer size): one line per group of arms that differ only in
    it, the mean per arm with its 95 % CI as a band (where an arm has 2 or more finished runs), runs as dots."""
    sub = runs[pd.to_numeric(runs[factor], errors="coerce").notna()]
    table = summarize(sub, metric=metric)
    factor_values = sub.groupby("arm", sort=False)[factor].first().astype(float)
    table["x"] = table["arm"].map(factor_values)
    factor_column = next((k for k, v in FACTORS.items() if v == factor), factor)
    others = [c for c in sub.attrs.get("arm_columns", []) if c in sub and c not in (factor_column, factor)]
    firsts = sub.groupby("arm", sort=False).first()
    table["group"] = table["arm"].map(lambda arm: " ".join(
        f"{c}={firsts.loc[arm, c]}" for c in others if pd.notna(firsts.loc[arm, c])))
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        drew_band = drew_dots = False
        for k, (group, rows) in enumerate(table.sort_values("x").groupby("group", sort=False)):
            mixer = sub.loc[sub["arm"] == rows["arm"].iloc[0], "mixer"].iloc[0]
            color = mixer_color(mixer)
            ax.plot(rows["x"], rows["mean"], marker=MARKERS[k % len(MARKERS)], ls=LINESTYLES[k % len(LINESTYLES)],
                    color=color, label=group.replace("mixer=", "") or DISPLAY.get(mixer, mixer))
            has_ci = rows["n"] >= 2
            if has_ci.sum() >= 2:
                ax.fill_between(rows["x"][has_ci], rows["ci_low"][has_ci], rows["ci_high"][has_ci], color=color,
                                alpha=0.18, lw=0, label=None if drew_band else f"{CONFIDENCE_TEXT} CI over seeds")
                drew_band = True
            for _, row in rows.iterrows():
                values = finished_values(sub, row["arm"], metric)
                if len(values):
                    ax.scatter([row["x"]] * len(values), values, label=None if drew_dots else "finished run",
                               **{**RUN_DOT, "s": 8})
                    drew_dots = True
        if annotate_depths:
            depths = sub.groupby("arm", sort=False)["depths"].first()
            for _, row in table.iterrows():
                ax.annotate(f"d={depths[row['arm']]}", (row["x"], row["mean"]), textcoords="offset points",
                            xytext=(4, 6), fontsize=7)
        _references(ax, sub, testbeds)
        if factor == "gamma_float":  # read γ as the fractions the runs were given
            levels = sub.groupby("gamma_float")["gamma"].first()
            ax.set_xticks(levels.index.to_numpy(dtype=float), levels.astype(str).tolist())
        ax.set_xlabel(AXIS_LABELS.get(factor, factor))
        ax.set_ylabel(f"{metric} (%)")
        _plain_axes(ax)
        name = AXIS_LABELS.get(factor, factor).split(" (")[0]
        band = f", band: {CONFIDENCE_TEXT} CI" if drew_band else ""
        ax.set_title(f"{metric} vs {name}: mean per arm{band}, dots: runs", fontsize=9)
        _legend(ax)
        return fig


def pareto_front(x: np.ndarray, y: np.ndarray, larger_x_better: bool) -> np.ndarray:
    """Indices of the points no other point beats on both axes (higher y, and lower or higher x)."""
    # best x first; among equal x the higher y first, so a point tied on x with a better one is dominated
    order = np.lexsort((-y, -x if larger_x_better else x))
    front, best = [], -np.inf
    for i in order:
        if y[i] > best:
            front.append(i)
            best = y[i]
    return np.array(front, dtype=int)


def figure_tradeoff(runs: pd.DataFrame, x: str, testbeds: Optional[Dict[str, Testbed]] = None,
                    metric: str = DEFAULT_METRIC) -> Figure:
    """Accuracy against MACs (fewer is better) or measured images/s (more is better): the arm means, runs as
    faint dots, and the Pareto front of the arm means when it has two or more points."""
    used = runs[runs["used"]].copy()
    scale = AXIS_SCALE.get(x, 1.0)
    used["_x"] = pd.to_numeric(used[x], errors="coerce") * scale
    used["_y"] = pd.to_numeric(used[metric], errors="coerce")
    # a seed run twice in an arm is one replicate, as in the tables and tests: its runs averaged first
    means = used.groupby(["arm", "seed"], sort=False, dropna=False)[["_x", "_y"]].mean() \
        .groupby(level="arm", sort=False).mean().dropna()
    styles = _arm_styles(runs)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(6, 4))
        for arm, row in means.iterrows():
            dots = used[used["arm"] == arm]
            ax.scatter(dots["_x"], dots["_y"], s=10, alpha=0.4, color=styles[arm]["color"])
            ax.scatter(row["_x"], row["_y"], s=60, color=styles[arm]["color"], marker=styles[arm]["marker"],
                       edgecolor="black", label=arm, zorder=4)
        larger_better = "images_per_s" in x
        front = means.iloc[pareto_front(means["_x"].to_numpy(), means["_y"].to_numpy(), larger_better)] \
            .sort_values("_x") if len(means) else means
        if len(front) >= 2:
            ax.plot(front["_x"], front["_y"], "-", color="black", lw=0.8, alpha=0.6, label=PARETO_LABEL, zorder=2)
        _references(ax, runs, testbeds)
        ax.set_xlabel(AXIS_LABELS.get(x, x))
        ax.set_ylabel(f"{metric} (%)")
        _plain_axes(ax)
        what = "measured speed" if larger_better else "MACs"
        ax.set_title(f"{metric} vs {what}: arm means (large), runs (small)"
                     f"{', Pareto front' if len(front) >= 2 else ''}", fontsize=9)
        _legend(ax)
        return fig


def figure_curves(curves: pd.DataFrame, runs: pd.DataFrame, metric: str = DEFAULT_METRIC) -> Figure:
    """Per-epoch ``metric`` of the finished runs: the mean per arm, and the min-max band over its seeds where
    it has two or more."""
    data = curves[(curves["metric"] == metric) & curves["run_dir"].isin(runs.loc[runs["used"], "run_dir"])]
    styles = _arm_styles(runs)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(6, 3.8))
        drew_band = False
        seed_of = runs.set_index("run_dir")["seed"]
        for arm, group in data.groupby("arm", sort=False):
            # a seed run twice in an arm is one replicate, as in the tables and tests: its runs averaged first.
            # Epochs that were not evaluated (train.eval_every > 1) hold no value: a line through NaNs draws nothing
            per_seed = group.assign(_seed=group["run_dir"].map(seed_of)).groupby(["_seed", "epoch"], dropna=False)[
                "value"].mean().reset_index()
            stats = per_seed.groupby("epoch")["value"].agg(["mean", "min", "max", "count"]).dropna(subset=["mean"])
            epochs = stats.index.to_numpy()
            ax.plot(epochs, stats["mean"], color=styles[arm]["color"], ls=styles[arm]["ls"],
                    marker=styles[arm]["marker"] if len(epochs) < 3 else None, label=arm)
            if per_seed["_seed"].nunique(dropna=False) >= 2:
                ax.fill_between(epochs, stats["min"], stats["max"], color=styles[arm]["color"], alpha=0.15, lw=0,
                                label=None if drew_band else "min–max over seeds")
                drew_band = True
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"{metric} (%)" if "top" in metric else metric)
        _plain_axes(ax)
        ax.set_title(f"per-epoch {metric}: mean over each arm's finished runs"
                     f"{', band: min–max over seeds' if drew_band else ''}", fontsize=9)
        _legend(ax)
        return fig


MIXER_BARS_LABEL = "token mixer (colour: its mixer)"
NEUTRAL_SWATCH = "lightgrey"  # a legend entry that stands for several colours


def figure_breakdown(runs: pd.DataFrame) -> Figure:
    """MACs per component and arm: the token mixer in its mixer's colour, MLP and the rest hatched."""
    arms = list(dict.fromkeys(runs["arm"]))
    styles = _arm_styles(runs)

    def mean(arm: str, column: str) -> float:
        values = pd.to_numeric(runs.loc[runs["arm"] == arm, column], errors="coerce") if column in runs else None
        return float(values.mean()) * 1e-6 if values is not None and values.notna().any() else 0.0

    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(1.3 * len(arms) + 2.5, 3.8))
        mixer = np.array([mean(a, "macs_mixer") for a in arms])
        mlp = np.array([mean(a, "macs_mlp") for a in arms])
        rest = np.array([mean(a, "macs") for a in arms]) - mixer - mlp
        positions = np.arange(len(arms))
        ax.bar(positions, mixer, color=[styles[a]["color"] for a in arms], edgecolor="black",
               label=MIXER_BARS_LABEL if mixer.any() else None)  # shift's mixer costs 0
        ax.bar(positions, mlp, bottom=mixer, color="white", edgecolor="black", hatch="///", label="MLP")
        ax.bar(positions, rest, bottom=mixer + mlp, color="white", edgecolor="black", hatch="..",
               label="embed + merge + head + norms")
        ax.set_xticks(positions, [a.replace(" ", "\n") for a in arms], fontsize=8)
        ax.set_ylabel("M MACs per image")
        _plain_axes(ax)
        _legend(ax)
        legend = ax.get_legend()
        for handle, text in zip(legend.legend_handles, legend.get_texts()):
            if text.get_text() == MIXER_BARS_LABEL:  # matplotlib would show the first arm's colour: often shift's,
                handle.set_facecolor(NEUTRAL_SWATCH)  # whose bar has no height, so the only colour not drawn
        ax.set_title("Where the MACs go, per arm", fontsize=9)
        return fig


def factor_columns(runs: pd.DataFrame) -> List[str]:
    """Numeric knobs (``FACTORS``) that take two or more values among the arms: one line figure each."""
    numerics = {factor_column(column) for column in runs.attrs.get("arm_columns", [])}
    return [numeric for numeric in FACTORS.values() if numeric in numerics and numeric in runs
            and pd.to_numeric(runs[numeric], errors="coerce").dropna().nunique() > 1]


def build_figures(runs: pd.DataFrame, curves: Optional[pd.DataFrame] = None,
                  testbeds: Optional[Dict[str, Testbed]] = None, metric: str = DEFAULT_METRIC) -> Dict[str, Figure]:
    """Every figure the runs support, as open Figures (name -> Figure)."""
    figures: Dict[str, Figure] = {}
    if runs.empty or not runs["used"].any():
        return figures
    testbeds = testbeds_of(runs) if testbeds is None else testbeds
    figures["arms"] = figure_arms(runs, testbeds, metric)
    for factor in factor_columns(runs):
        name = {"gamma_float": "gamma", "tau": "tau_depth"}.get(factor, factor.replace(".", "_"))
        figures[name] = figure_factor(runs, factor, testbeds, metric, annotate_depths=factor == "tau")
    if pd.to_numeric(runs.get("macs"), errors="coerce").notna().any():
        figures["acc_vs_macs"] = figure_tradeoff(runs, "macs", testbeds, metric)
    if "train_images_per_s" in runs and pd.to_numeric(runs["train_images_per_s"], errors="coerce").notna().any():
        figures["acc_vs_speed"] = figure_tradeoff(runs, "train_images_per_s", testbeds, metric)
    if curves is not None and not curves.empty:
        figures[f"curves_{metric}"] = figure_curves(curves, runs, metric)
    if "macs_mixer" in runs:
        figures["macs_breakdown"] = figure_breakdown(runs)
    return figures


def save_figures(figures: Dict[str, Figure], out_dir: Path) -> Dict[str, List[Path]]:
    return {name: _save(fig, out_dir, name) for name, fig in figures.items()}


def plot_arms(runs: pd.DataFrame, out_dir: Path, metric: str = DEFAULT_METRIC) -> List[Path]:
    return _save(figure_arms(runs, testbeds_of(runs), metric), out_dir, "arms")


def plot_factor(runs: pd.DataFrame, out_dir: Path, factor: str, name: str, metric: str = DEFAULT_METRIC,
                annotate_depths: bool = False) -> List[Path]:
    return _save(figure_factor(runs, factor, testbeds_of(runs), metric, annotate_depths), out_dir, name)


def plot_tradeoff(runs: pd.DataFrame, out_dir: Path, x: str, name: str, metric: str = DEFAULT_METRIC) -> List[Path]:
    return _save(figure_tradeoff(runs, x, testbeds_of(runs), metric), out_dir, name)


def plot_curves(curves: pd.DataFrame, runs: pd.DataFrame, out_dir: Path, metric: str = DEFAULT_METRIC) -> List[Path]:
    return _save(figure_curves(curves, runs, metric), out_dir, f"curves_{metric}")


def plot_breakdown(runs: pd.DataFrame, out_dir: Path) -> List[Path]:
    return _save(figure_breakdown(runs), out_dir, "macs_breakdown")


def legend_entries(fig: Figure) -> Sequence[tuple]:
    """(label, artist) of every legend entry in ``fig``: what a reader is told is drawn."""
    return [(label, handle) for ax in fig.axes for handle, label in zip(*ax.get_legend_handles_labels())]
