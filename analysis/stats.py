"""Statistics over seeds: means with 95% confidence intervals, paired differences, and an equivalence test
(two one-sided t-tests, statsmodels) that turns into a plain verdict per comparison.

Verdicts, for the paired difference d = treatment - control (top-1 points) and margin m:

* ``equivalent``: the 90% CI of d lies inside (-m, +m) (TOST at alpha = 0.05);
* ``<treatment> better`` / ``<control> better``: the 95% CI of d excludes 0 and d is not equivalent;
* ``inconclusive - need more seeds``: neither, with an estimate of how many seeds would settle it
  (statsmodels' t-test power, 80% power).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
from scipy import stats as st
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import DescrStatsW

DEFAULT_MARGIN = 1.0
ALPHA = 0.05
POWER = 0.8
DISPLAY = {"attn": "attention", "global_attn": "global attention", "mlp": "token-MLP", "dwconv": "depthwise conv",
           "pool": "pooling", "identity": "identity", "random": "random mixing", "shift": "shift"}


def summarize(df: pd.DataFrame, by: Sequence[str] = ("mixer",), metric: str = "val_top1",
              confidence: float = 0.95) -> pd.DataFrame:
    """Mean, std, n and a t-based confidence interval of ``metric`` per configuration."""
    rows = []
    for key, group in df.groupby(list(by), dropna=False, sort=True):
        values = group[metric].dropna().to_numpy(dtype=float)
        n = len(values)
        mean = float(values.mean()) if n else math.nan
        sd = float(values.std(ddof=1)) if n > 1 else math.nan
        half = float(st.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)) if n > 1 else math.nan
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, key)), "n": n, "mean": mean, "std": sd, "ci_low": mean - half,
                     "ci_high": mean + half, "macs": group["macs"].mean() if "macs" in group else math.nan,
                     "params": group["params"].mean() if "params" in group else math.nan})
    return pd.DataFrame(rows)


def paired_differences(df: pd.DataFrame, treatment: str, control: str, by: str = "mixer", pair_on: str = "seed",
                       metric: str = "val_top1") -> pd.DataFrame:
    """``treatment - control`` per value of ``pair_on`` (seed), only where both exist."""
    a = df[df[by] == treatment].set_index(pair_on)[metric]
    b = df[df[by] == control].set_index(pair_on)[metric]
    both = sorted(set(a.dropna().index) & set(b.dropna().index))
    return pd.DataFrame({pair_on: both, "treatment": a.loc[both].to_numpy(), "control": b.loc[both].to_numpy(),
                         "diff": (a.loc[both] - b.loc[both]).to_numpy()})


@dataclass
class Equivalence:
    treatment: str
    control: str
    n: int
    mean_diff: float
    sd_diff: float
    ci95_low: float
    ci95_high: float
    ci90_low: float
    ci90_high: float
    p_tost: float
    p_difference: float
    margin: float
    verdict: str
    seeds_needed: Optional[int]


def _seeds_needed(mean: float, sd: float, margin: float) -> Optional[int]:
    """Seeds for 80% power: to show equivalence if |d| < margin, else to show the difference."""
    if not np.isfinite(sd) or sd == 0:
        return None
    power = TTestPower()
    try:
        if abs(mean) < margin:
            n = power.solve_power(effect_size=(margin - abs(mean)) / sd, alpha=ALPHA, power=POWER,
                                  alternative="larger")
        elif mean != 0:
            n = power.solve_power(effect_size=abs(mean) / sd, alpha=ALPHA, power=POWER, alternative="two-sided")
        else:
            return None
    except (ValueError, RuntimeError):
        return None
    return int(math.ceil(float(n))) if np.isfinite(n) else None


def equivalence(diffs: Sequence[float], treatment: str = "shift", control: str = "attn",
                margin: float = DEFAULT_MARGIN) -> Equivalence:
    """TOST on paired differences with a symmetric margin, plus a two-sided test of any difference."""
    d = np.asarray([x for x in diffs if x is not None and np.isfinite(x)], dtype=float)
    n = len(d)
    t_name, c_name = DISPLAY.get(treatment, treatment), DISPLAY.get(control, control)
    if n < 2:
        return Equivalence(treatment, control, n, float(d.mean()) if n else math.nan, math.nan, math.nan,
                           math.nan, math.nan, math.nan, math.nan, math.nan, margin,
                           f"inconclusive - need more seeds (have {n}, need at least 2)", None)
    stats = DescrStatsW(d)
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0:  # identical differences: the intervals collapse to the point
        lo95 = hi95 = lo90 = hi90 = mean
        p_tost = 0.0 if abs(mean) < margin else 1.0
        p_diff = 0.0 if mean != 0 else 1.0
    else:
        lo95, hi95 = stats.tconfint_mean(alpha=ALPHA)
        lo90, hi90 = stats.tconfint_mean(alpha=2 * ALPHA)
        p_tost = float(stats.ttost_mean(-margin, margin)[0])
        p_diff = float(stats.ttest_mean(0.0)[1])
    if -margin < lo90 and hi90 < margin:
        verdict, needed = "equivalent", None
    elif lo95 > 0:
        verdict, needed = f"{t_name} better", None
    elif hi95 < 0:
        verdict, needed = f"{c_name} better", None
    else:
        needed = _seeds_needed(mean, sd, margin)
        verdict = f"inconclusive - need more seeds (about {needed})" if needed else "inconclusive - need more seeds"
    return Equivalence(treatment, control, n, mean, sd, float(lo95), float(hi95), float(lo90), float(hi90),
                       p_tost, p_diff, margin, verdict, needed)


def verdicts(df: pd.DataFrame, treatment: str = "shift", controls: Optional[List[str]] = None,
             by: str = "mixer", metric: str = "val_top1", margin: float = DEFAULT_MARGIN) -> pd.DataFrame:
    """One verdict row per ``treatment`` vs control comparison (paired by seed)."""
    present = list(dict.fromkeys(df[by].dropna()))
    controls = controls or [c for c in present if c != treatment]
    rows: List[Dict[str, object]] = []
    for control in controls:
        diffs = paired_differences(df, treatment, control, by=by, metric=metric)["diff"]
        rows.append(asdict(equivalence(diffs.tolist(), treatment, control, margin)))
    return pd.DataFrame(rows)
