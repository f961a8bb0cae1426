"""Statistics over seeds, per arm (one configuration, see ``arms``), and a verdict per comparison of two arms.

* ``summarize``: per arm, the finished runs' mean with a t-interval over seeds, the seed SD beside the
  binomial SE of one run's accuracy on the validation set (whichever is larger dominates the noise), how many
  seeds diverged, failed or were interrupted (never averaged), and the arm's MACs and params.
* ``verdicts``: each treatment arm against a baseline arm. Unpaired Welch by default; paired by seed only when
  asked (``pair_by="seed"``) and only over complete pairs: two mixers with the same seed share the data order,
  not the initialisation. Two tests on d = treatment - baseline (top-1 points), both statsmodels/scipy:
  equivalence within ±margin (TOST) and a two-sided test of any difference, each Holm-corrected over the
  comparisons of one call. The verdict states both:

  - ``equivalent within ±m``: TOST rejects, the difference test does not;
  - ``X better by d [95 % CI]``: the difference test rejects, TOST does not;
  - ``equivalent within ±m, yet different``: both reject (a real but small difference);
  - ``inconclusive``: neither, with the seeds per arm that would settle it at 80 % power, as a range from the
    95 % interval of the variance estimate, at the level the correction holds each comparison to at worst
    (α / k for k comparisons: Holm's first step); where the validation images' noise is counted, by that test,
    whose images term does not shrink with seeds: when it alone leaves under 80 % power, no number of seeds would;
  - a claim (a difference or an equivalence) that the seeds' permutation test, Holm-corrected alike, does not
    support gets its condition: ``…, if the seeds' spread is normal: the permutation test … gives p = …``. The t
    tests assume a normal spread of seeds, which fails where some seeds learn a task and others stay at chance;
    the permutation test assumes no shape, but few seeds cap it (3 and 3 seeds give no p below 0.10), and then
    the condition says how many seeds could reach the level;
  - ``insufficient data``: fewer than 2 finished runs in an arm (or complete pairs), or no variance at all;
  - ``testbed cannot separate the arms: <why>`` replaces an equivalence or an inconclusive outcome when the
    testbed cannot resolve the arms (``headroom.ceiling_reason``: both near 100 %, or neither above a raw-pixel
    baseline, with how many seeds of each are); a difference the test still finds is stated without the
    equivalence, with where it was measured;
  - ``not budget-matched (+87 % MACs)`` replaces any outcome when the arms' budgets differ by more than the
    tolerance, unless both were solved to the same target (each is then within its tolerance of it): the
    comparison is otherwise not the one the ablation asks about.

A seed is one replicate: where an arm holds a seed more than once (two sweeps of one configuration), its
finished values are averaged into one (``load.load_runs`` warns). A treatment arm is compared only with a
baseline arm on the same data; one without is left out of the verdicts (``table.attrs['no_baseline']``).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from scipy import stats as st
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW, ttost_ind, ttost_paired

from shiftvit.config import DEFAULT_TOLERANCE, MATCH_PARAMS, MORE_SEEDS, check_tolerance
from shiftvit.records import (
    DIVERGED,
    FAILED_STATUSES,
    PREDICTIONS_FILE,
    RUNNING,
    TRAINED_STATUSES,
    USED_STATUSES,
    read_predictions,
)

from .arms import DISPLAY, ArmSpec, arms_matching, column_name, describe, is_recipe_column, select_arm, value_text
from .headroom import CEILING, Testbed, ceiling_reason, count_beating_raw, testbeds_of

DEFAULT_MARGIN = 1.0
DEFAULT_METRIC = "val_top1"  # what the tables, tests and figures compare unless asked for another
ALPHA = 0.05
CONFIDENCE = 1 - ALPHA  # of every interval shown (not adjusted for multiple comparisons)
POWER = 0.8
CONFIDENCE_TEXT, POWER_TEXT = f"{CONFIDENCE * 100:g} %", f"{POWER * 100:g} %"  # as sentences and figures write them
CORRECTION = "holm"
CORRECTED = CORRECTION.capitalize()  # the multiple-comparison correction, as the tables name it
# beyond this many seeds per arm a seeds count stops being advice
MAX_SEEDS = 1000
NO_IMAGES = (0.0, 0.0, 1)  # (between, within, images) of a seed test: no images term
IMAGES_AND_SEEDS = "images + seeds"  # the test that counts both sources of noise, as the tables name it
INSUFFICIENT = "insufficient data"
PAIRED_TEST, WELCH_TEST = "paired by seed", "Welch (unpaired)"  # a Comparison's test
PERMUTATION = "permutation"  # the seeds' test that assumes no shape of their spread, as the tables name it
# random rearrangements scipy draws where there are more than this many (its p then counts the observed one)
PERMUTATIONS = 9_999
# The permutation tests' statistics are rounded to this many decimals. Accuracies are k/N·100, so two arrangements
# of the seeds with the same mean difference come out some 1e-14 apart; scipy counts as ties only values within
# 100 ulp of the observed statistic (about 1e-14 at a few points), so most real ties were counted as less extreme
# and p came out too small (0.040 where the exact p is 0.071). A real difference of means is 1e-5 points or more
# even at N = 10^6 images and 10 seeds.
STATISTIC_DECIMALS = 9
ADD_SEEDS = f"add seeds to the sweep ({MORE_SEEDS})"  # the way out of too few seeds, in run.py's own words
# the way out where an arm has too few finished seeds because its seeds diverged: more seeds of that recipe would
# diverge as often, so the way to a test of the means is a recipe both arms train on (each arm's own lr would be a
# difference of recipe, which the verdict names)
STEADIER_RECIPE = ("more seeds of a recipe that diverges may diverge as well: for a test of the means, train both "
                   "arms on a recipe they finish (a lower train.lr, train.clip_grad)")
NO_HEADROOM = "testbed cannot separate the arms"
NO_HEADROOM_OF_LEVELS = "testbed cannot separate the levels"  # the same, of a one-factor sweep's trend
INCONCLUSIVE = "inconclusive"
NOT_MATCHED = "not budget-matched"
OTHER_RECIPE = "the arms also differ in their recipe"  # a mixer compared at other epochs, lr, augmentation ...
UNFINISHED = "seeds that did not finish, in no test of the means"  # a verdict's condition when either arm has some
UNPAIRED = "finished seeds without a pair, in no paired test"  # a paired verdict's condition: seeds only one arm has
NO_VALUE = "finished seeds without a value, in no test"  # a verdict's condition: completed runs that lack the metric
# a verdict's condition where the testbed could not be built here (its data is elsewhere): neither the ceiling nor the
# raw-pixel baseline was checked
HEADROOM_UNCHECKED = "testbed headroom not checked"
DIVERGES_MORE = "diverges more often"  # a verdict's claim when Fisher's test of the arms' divergence counts holds
DEFAULT_BASELINE = {"mixer": "attn"}
# one-factor sweeps report a trend: the arm column -> the numeric column it is plotted and fitted on
FACTORS = {"gamma": "gamma_float", "tau": "tau", "mixer.shift_size": "mixer.shift_size",
           "mixer.kernel_size": "mixer.kernel_size", "mixer.window_size": "mixer.window_size"}
# how a seed's runs rank for its status (seed_statuses): finished, still training, then the failures
UNFINISHED_STATUSES = (RUNNING, *FAILED_STATUSES)  # a seed's, when none of its runs finished
SEED_STATUS_ORDER = (*USED_STATUSES, *UNFINISHED_STATUSES)
# summarize's columns, in order; the arm's defining columns go after "arm"
ARM_SUMMARY_COLUMNS = ("arm", "seeds", "runs", "n", "running", "failures", "mean", "ci_low", "ci_high", "seed_sd",
                       "binomial_se", "noise", "macs", "params", "val_images")


def default_tolerance() -> float:
    """The project's default budget tolerance, for runs that recorded none (``match=none``)."""
    return DEFAULT_TOLERANCE


def _require_arms(runs: pd.DataFrame) -> None:
    if "arm" not in runs or "used" not in runs:
        raise ValueError("runs need 'arm' and 'used' columns: load them with analysis.load_runs")


def check_metric(runs: pd.DataFrame, metric: str) -> None:
    """A best-over-epochs metric is taken over the evaluated epochs only, so it depends on ``train.eval_every``,
    which the arms leave out (it never changes the final numbers): refuse to pool or compare runs that evaluated
    differently, within an arm or across arms (a run resumed under another schedule reads ``3 + 1``: load.py)."""
    if not metric.startswith("best_") or "eval_every" not in runs:
        return
    used = runs[runs["used"] & runs["eval_every"].notna()]
    schedule = used["eval_every"].map(lambda every: value_text(int(every) if isinstance(every, float) else every))
    every = sorted(set(schedule), key=lambda text: (len(text), text))
    if len(every) > 1:
        arms = sorted(set(used.loc[schedule != every[0], "arm"]))
        raise ValueError(f"{metric} is the best of the evaluated epochs, and the runs evaluated every "
                         f"{' or '.join(every)} epochs ({', '.join(arms)} not every {every[0]}): compare val_top1 "
                         "(the last epoch), or runs with one train.eval_every")


def finished_values(runs: pd.DataFrame, arm: str, metric: str = DEFAULT_METRIC) -> pd.Series:
    """The arm's accuracies that may enter a mean or a test (finished runs only), one per seed: a seed that
    finished more than once in the arm (a rerun of the same configuration) is one replicate, its mean."""
    rows = runs[(runs["arm"] == arm) & runs["used"]]
    values = pd.to_numeric(rows[metric], errors="coerce")
    values = pd.Series(values.to_numpy(dtype=float), index=rows["seed"].to_numpy()).dropna()
    return values.groupby(level=0, sort=False, dropna=False).mean() if values.index.has_duplicates else values


def without_value(runs: pd.DataFrame, arm: str, metric: str = DEFAULT_METRIC) -> int:
    """The arm's finished seeds none of whose runs recorded ``metric`` (left out of its mean, so counted beside
    failures)."""
    rows = runs[(runs["arm"] == arm) & runs["used"]]
    if metric not in rows:
        return rows["seed"].nunique(dropna=False)
    missing = pd.to_numeric(rows[metric], errors="coerce").isna()
    return int(missing.groupby(rows["seed"].to_numpy(), dropna=False).all().sum())


def seed_statuses(group: pd.DataFrame) -> List[str]:
    """One status per seed of an arm's runs. Reruns of one configuration and seed are one replicate: a seed
    counts as finished when any of its runs finished, else as running when one still trains, else as the first of
    its failures in ``FAILED_STATUSES``' order (a divergence says more about the arm than an interruption)."""
    rank = {status: i for i, status in enumerate(SEED_STATUS_ORDER)}
    return [min(statuses, key=lambda status: rank.get(status, len(rank)))
            for _, statuses in group.groupby(group["seed"].to_numpy(), sort=False, dropna=False)["status"]]


def _no_spread(values: np.ndarray) -> bool:
    """Whether the values are all equal up to float rounding. Accuracies are k/N·100, so a difference of one image
    on every seed comes out as 0.27777777777777857 and 0.2777777777777715: a t-test would read that as a certain
    difference (SD 7e-15, p 1e-28) instead of no variance."""
    values = np.asarray(values, dtype=float)
    return len(values) == 0 or float(np.ptp(values)) <= 1e-9 * max(1.0, float(np.abs(values).max()))


def failures_text(statuses: Sequence[str], of: Sequence[str] = FAILED_STATUSES) -> str:
    """``1 of 3 seeds diverged; 1 of 3 seeds interrupted`` (empty when every seed finished); ``of``: the statuses
    counted."""
    statuses = list(statuses)
    return "; ".join(f"{statuses.count(s)} of {len(statuses)} seeds {s}" for s in of if s in statuses)


def summarize(runs: pd.DataFrame, metric: str = DEFAULT_METRIC, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """One row per arm: the columns that define it, ``seeds`` (all, as ``seed_statuses`` counts them), ``runs``
    (all, a seed rerun counting each time), ``n`` (finished seeds, used), ``running`` (seeds still training, in no
    mean yet), ``failures`` (per seed),
    mean and t-interval of ``metric`` over the finished seeds (an accuracy's clipped to 0-100 %), ``seed_sd``,
    ``binomial_se`` (one run's accuracy at the arm's mean, on its validation set), ``noise`` (which of the two
    is larger), MACs and params."""
    _require_arms(runs)
    check_metric(runs, metric)
    arm_columns = [c for c in runs.attrs.get("arm_columns", []) if c in runs]
    rows = []
    for arm, group in runs.groupby("arm", sort=False):
        values = finished_values(runs, arm, metric).to_numpy()
        n = len(values)
        mean = float(values.mean()) if n else math.nan
        sd = float(values.std(ddof=1)) if n > 1 else math.nan
        low, high = DescrStatsW(values).tconfint_mean(alpha=1 - confidence) if n > 1 else (math.nan, math.nan)
        if _is_accuracy(metric):  # a t-interval knows nothing of the bounds: 96.6, 88.0, 99.5 give 79.8-109.6
            low, high = max(float(low), 0.0), min(float(high), CEILING)
        val_images = group["val_images"].dropna().iloc[0] if "val_images" in group and \
            group["val_images"].notna().any() else None
        se = Testbed(data="", data_config="", val_images=int(val_images) if val_images else None).binomial_se(mean)
        noise = ("seed variance" if sd > se else "test-set size") if math.isfinite(sd) and math.isfinite(se) else ""
        statuses = seed_statuses(group)
        failures = "; ".join(filter(None, [failures_text(statuses), no_value_text(runs, arm, metric)]))
        rows.append({"arm": arm, **{c: group[c].iloc[0] for c in arm_columns}, "seeds": len(statuses),
                     "runs": len(group), "n": n, "running": statuses.count(RUNNING),
                     "failures": failures, "mean": mean, "ci_low": float(low),
                     "ci_high": float(high), "seed_sd": sd, "binomial_se": se, "noise": noise,
                     "macs": _mean(group, "macs"), "params": _mean(group, "params"),
                     "val_images": val_images})
    return pd.DataFrame(rows, columns=[ARM_SUMMARY_COLUMNS[0], *arm_columns, *ARM_SUMMARY_COLUMNS[1:]])


def _is_accuracy(metric: str) -> bool:
    """An accuracy in %, bounded by 0 and 100 (``val_top1``, ``ema_val_top1``, ``val_top5`` ...)."""
    return "top1" in metric or "top5" in metric


def p_text(value: Any) -> str:
    """A p-value as every table and verdict prints it: three decimals, ``<0.001`` below, "" where there is none."""
    if value is None or not math.isfinite(value):
        return ""
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def p_equals(value: float) -> str:
    """``p = 0.048``, ``p < 0.001``: a p-value as a sentence states it."""
    text = p_text(value)
    return f"p < {text[1:]}" if text.startswith("<") else f"p = {text}"


def _mean(group: pd.DataFrame, column: str) -> float:
    return float(pd.to_numeric(group[column], errors="coerce").mean()) if column in group else math.nan


# --- one comparison ----------------------------------------------------------------------------------------------
@dataclass
class Comparison:
    treatment: str
    baseline: str
    test: str
    n_treatment: int
    n_baseline: int
    diff: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    p_equivalence: float = math.nan
    p_difference: float = math.nan
    p_equivalence_adj: float = math.nan
    p_difference_adj: float = math.nan
    margin: float = DEFAULT_MARGIN
    seeds_low: Optional[int] = None
    seeds_high: Optional[int] = None
    seeds_alpha: float = ALPHA
    noise_sd: float = math.nan  # the SD the seeds advice assumes (of the differences when paired, pooled else)
    noise_dof: int = 0  # its degrees of freedom
    # the same difference with the validation set's own sampling noise counted (images_and_seeds_test), where
    # every finished run of both arms recorded its predictions on the same images; images_why says why not else
    images_ci_low: float = math.nan
    images_ci_high: float = math.nan
    images_p_equivalence: float = math.nan
    images_p_difference: float = math.nan
    images_p_equivalence_adj: float = math.nan
    images_p_difference_adj: float = math.nan
    images_why: str = ""
    # the seeds' permutation tests (permutation_tests), which do not take the seeds' spread to be normal, and the
    # smallest two-sided p that these counts of seeds can give at all
    permutation_p_equivalence: float = math.nan
    permutation_p_difference: float = math.nan
    permutation_p_equivalence_adj: float = math.nan
    permutation_p_difference_adj: float = math.nan
    permutation_floor: float = math.nan
    # what the seeds advice needs of the images' noise: how many images, the variance over them of the arms' true
    # per-image difference (points², a floor no number of seeds lowers) and one seed's own luck on an image
    images_count: int = 0
    images_between_var: float = math.nan
    images_within_var: float = math.nan
    # the floor's 95 % interval: estimated through the seeds' own luck, from a few seeds it is uncertain too
    images_between_var_low: float = math.nan
    images_between_var_high: float = math.nan
    # the images' noise alone leaves under 80 % power however many seeds: at the low end of the floor's interval
    # (never), or only at its high end (maybe_never: then the seeds range's high end is None)
    seeds_never: bool = False
    seeds_maybe_never: bool = False
    # how many finished seeds of each arm beat the testbed's better raw-pixel baseline by more than the margin (the
    # seeds that learned the task where seeds learn it or stay at chance), and Fisher's exact test of the two counts
    beats_raw_treatment: Optional[int] = None
    beats_raw_baseline: Optional[int] = None
    beats_raw_p: float = math.nan
    beats_raw_p_adj: float = math.nan
    budget: str = ""
    budget_matched: Optional[bool] = None
    recipe_differs: str = ""  # recipe_difference: ``epochs 3 vs 1`` where the arms differ in more than the recipe
    ceiling: str = ""
    # the seeds of either arm that diverged, failed or were interrupted (``unfinished_text``): the tests read the
    # finished seeds only, so a claim holds of those
    unfinished: str = ""
    unpaired: str = ""  # paired by seed: each arm's finished seeds the other has none of (``unpaired_text``)
    no_value: str = ""  # each arm's finished seeds that recorded no value of the metric (``no_value_text``'s)
    headroom_unchecked: str = ""  # why the testbed could not be built here (its note), where it could not
    # where either arm diverged: each arm's diverged seeds out of its seeds that trained to the end or diverged
    # (a failed or interrupted seed tells nothing of the arm), and Fisher's exact test of the two counts
    diverged_treatment: Optional[int] = None
    trained_treatment: Optional[int] = None
    diverged_baseline: Optional[int] = None
    trained_baseline: Optional[int] = None
    diverged_p: float = math.nan
    diverged_p_adj: float = math.nan
    outcome: str = ""
    verdict: str = ""


def compare(treatment: pd.Series, baseline: pd.Series, margin: float = DEFAULT_MARGIN, paired: bool = False,
            names: Tuple[str, str] = ("treatment", "baseline"), alpha: float = ALPHA,
            more_seeds: str = ADD_SEEDS) -> Comparison:
    """The raw tests of ``treatment - baseline`` (values indexed by seed, one each): Welch (unpaired) or paired
    over the seeds both have. No correction and no verdict yet (see ``verdicts``); degenerate inputs get
    ``outcome`` ``insufficient data`` and no p-values. ``alpha``: the level the seeds advice is computed at;
    ``more_seeds``: the way out of too few finished seeds (``more_seeds_way_out``)."""
    t = pd.Series(treatment, dtype=float).dropna()
    b = pd.Series(baseline, dtype=float).dropna()
    if paired:
        t, b = _complete_pairs(t, b)
    result = Comparison(names[0], names[1], PAIRED_TEST if paired else WELCH_TEST, len(t), len(b),
                        margin=margin)
    result.diff = float(t.mean() - b.mean()) if len(t) and len(b) else math.nan
    if paired:
        d = (t.to_numpy() - b.to_numpy())
        if len(d) < 2 or _no_spread(d):
            in_both = f"{more_seeds} in both arms" if more_seeds == ADD_SEEDS else more_seeds
            result.outcome = f"{INSUFFICIENT} ({len(d)} complete pairs, " + (
                f"no variance: {ADD_SEEDS}, whose spread the test needs)" if len(d) >= 2 else
                f"a paired test needs 2 or more: {in_both})")
            return result
        result.ci_low, result.ci_high = DescrStatsW(d).tconfint_mean(alpha=ALPHA)
        result.p_equivalence = float(ttost_paired(t.to_numpy(), b.to_numpy(), -margin, margin)[0])
        result.p_difference = float(st.ttest_rel(t.to_numpy(), b.to_numpy()).pvalue)
        sd, df = float(np.std(d, ddof=1)), len(d) - 1
    else:
        if len(t) < 2 or len(b) < 2:
            result.outcome = f"{INSUFFICIENT} ({len(t)} and {len(b)} finished runs; a test needs 2 or more in each " \
                             f"arm: {more_seeds})"
            return result
        if _no_spread(t.to_numpy()) and _no_spread(b.to_numpy()):
            result.outcome = f"{INSUFFICIENT} (no variance within either arm: each arm's seeds scored alike, which " \
                             f"leaves a seed test nothing to weigh a difference against; {ADD_SEEDS}, whose spread " \
                             "it needs)"
            return result
        result.ci_low, result.ci_high = CompareMeans(DescrStatsW(t.to_numpy()), DescrStatsW(b.to_numpy())) \
            .tconfint_diff(alpha=ALPHA, usevar="unequal")
        result.p_equivalence = float(ttost_ind(t.to_numpy(), b.to_numpy(), -margin, margin, usevar="unequal")[0])
        result.p_difference = float(st.ttest_ind(t.to_numpy(), b.to_numpy(), equal_var=False).pvalue)
        sd, df = math.sqrt((t.var() + b.var()) / 2), len(t) + len(b) - 2
    result.ci_low, result.ci_high = float(result.ci_low), float(result.ci_high)
    result.noise_sd, result.noise_dof = sd, df
    shape_free = permutation_tests(t.to_numpy(), b.to_numpy(), margin, paired)
    result.permutation_p_difference, result.permutation_p_equivalence = (shape_free["p_difference"],
                                                                         shape_free["p_equivalence"])
    result.permutation_floor = shape_free["floor"]
    _advise_seeds(result, alpha)
    return result


def _complete_pairs(treatment: pd.Series, baseline: pd.Series) -> Tuple[pd.Series, pd.Series]:
    """The two arms' values (indexed by seed) at the seeds both have, in one order."""
    common = sorted(set(treatment.index) & set(baseline.index))
    return treatment.loc[common], baseline.loc[common]


def permutation_tests(treatment: np.ndarray, baseline: np.ndarray, margin: float = DEFAULT_MARGIN,
                      paired: bool = False) -> Dict[str, float]:
    """The seeds' tests of ``treatment - baseline`` without the t tests' assumption that the seed-to-seed spread is
    normal: where some seeds learn a task and others stay at chance it is bimodal, and with a few seeds a t test can
    then claim more than the seeds show. scipy's permutation test of the difference of means, over every
    rearrangement of the seeds between the arms (swaps within pairs when ``paired``), or ``PERMUTATIONS`` random
    ones where there are more. ``p_difference``: two-sided (scipy doubles the smaller tail). ``p_equivalence``:
    two one-sided tests of the treatment moved by ∓``margin``, which assume only that a true difference shifts
    the seeds' distribution as a whole. ``floor``: the smallest two-sided p these counts of seeds can give,
    whatever their values: 2/20 = 0.10 for 3 and 3 seeds, so no difference at α = 0.05 however large."""
    t, b = np.asarray(treatment, dtype=float), np.asarray(baseline, dtype=float)
    kind = "samples" if paired else "independent"

    def p_value(moved: np.ndarray, alternative: str) -> float:
        return float(st.permutation_test((moved, b), _mean_difference, permutation_type=kind, vectorized=True,
                                         n_resamples=PERMUTATIONS, alternative=alternative, rng=0).pvalue)

    return dict(p_difference=p_value(t, "two-sided"),
                p_equivalence=max(p_value(t + margin, "greater"), p_value(t - margin, "less")),
                floor=permutation_floor(len(t), len(b), paired))


def permutation_floor(n_treatment: int, n_baseline: int, paired: bool = False) -> float:
    """The smallest two-sided p the permutation test of these counts of seeds can give, whatever their values."""
    return 2 / min(_arrangements(n_treatment, n_baseline, paired), PERMUTATIONS + 1)


def _mean_difference(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
    return np.round(x.mean(axis=axis) - y.mean(axis=axis), STATISTIC_DECIMALS)


def _arrangements(n_treatment: int, n_baseline: int, paired: bool) -> int:
    """How many ways the seeds can be dealt to the arms: swaps within each pair, or any split of the pooled seeds."""
    return 2 ** n_treatment if paired else math.comb(n_treatment + n_baseline, n_treatment)


def permutation_seeds(alpha: float, paired: bool) -> Optional[int]:
    """The fewest seeds per arm (pairs when paired) whose permutation test can give a two-sided p below ``alpha``
    at all (when every seed of one arm beats every seed of the other); None where not even ``PERMUTATIONS``
    random rearrangements can."""
    if 2 / (PERMUTATIONS + 1) >= alpha:
        return None
    seeds = 2
    while permutation_floor(seeds, seeds, paired) >= alpha:
        seeds += 1
    return seeds


def images_and_seeds_test(treatment: np.ndarray, baseline: np.ndarray, margin: float = DEFAULT_MARGIN,
                          paired: bool = False, confidence: float = CONFIDENCE) -> Dict[str, float]:
    """The difference of two arms' mean top-1 (points) tested with both sources of noise counted: the seeds and the
    validation images. ``treatment``, ``baseline``: (seeds, images) arrays of per-image correctness (1/0, or a
    seed's mean over its runs), scored on the same images in the same order (``paired``: row i of both is seed i).

    The seed tests (Welch, or paired) hold the validation set fixed: on 360 images one image is 0.28 points, and a
    difference of a few images can be settled by seeds alone. Here the standard error adds to the seed test's the
    variance a new draw of validation images would bring, from the spread over images of the per-image difference
    of the two arms' accuracies (seeds averaged), ÷ the number of images: SE² = SE²(seeds) + SE²(images), with the
    seed test's degrees of freedom. Never narrower than the seed test; conservative, since each seed's accuracy
    already carries its own luck on the images, which the images term counts again. Returns ``diff``, ``ci_low``,
    ``ci_high``, ``p_difference`` (two-sided) and ``p_equivalence`` (TOST within ±``margin``). Written by hand:
    statsmodels' mixed models fit one grouping factor, not images crossed with seeds, on 1/0 outcomes."""
    t, b = np.asarray(treatment, dtype=float), np.asarray(baseline, dtype=float)
    if t.ndim != 2 or b.ndim != 2 or t.shape[1] != b.shape[1] or t.shape[1] < 2 or min(len(t), len(b)) < 2 \
            or (paired and len(t) != len(b)):
        raise ValueError(f"need (seeds, images) arrays of 2+ seeds over the same 2+ images (the same seeds when "
                         f"paired); got shapes {t.shape} and {b.shape}")
    accuracy_t, accuracy_b = 100 * t.mean(axis=1), 100 * b.mean(axis=1)
    if paired:
        d = accuracy_t - accuracy_b
        var_seeds, dof = d.var(ddof=1) / len(d), len(d) - 1
    else:
        var_t, var_b = accuracy_t.var(ddof=1) / len(t), accuracy_b.var(ddof=1) / len(b)
        var_seeds = var_t + var_b
        # Welch–Satterthwaite; with no spread in either arm, the pooled test's
        dof = var_seeds ** 2 / (var_t ** 2 / (len(t) - 1) + var_b ** 2 / (len(b) - 1)) if var_seeds > 0 \
            else len(t) + len(b) - 2
    per_image = 100 * (t.mean(axis=0) - b.mean(axis=0))
    var_images = per_image.var(ddof=1) / per_image.size
    se = math.sqrt(var_seeds + var_images)
    diff = float(accuracy_t.mean() - accuracy_b.mean())
    parts = dict(images=per_image.size, **_image_variance_parts(t, b, paired))
    if se == 0:  # the same outcome on every image of every seed: nothing to test
        return dict(diff=diff, ci_low=diff, ci_high=diff, p_difference=math.nan, p_equivalence=math.nan, **parts)
    half = float(st.t.ppf(1 - (1 - confidence) / 2, dof)) * se
    return dict(diff=diff, ci_low=diff - half, ci_high=diff + half,
                p_difference=float(2 * st.t.sf(abs(diff) / se, dof)),
                p_equivalence=float(max(st.t.sf((diff + margin) / se, dof), st.t.sf((margin - diff) / se, dof))),
                **parts)


def _image_variance_parts(t: np.ndarray, b: np.ndarray, paired: bool, confidence: float = CONFIDENCE
                          ) -> Dict[str, float]:
    """The images term's variance over images (of the seeds-averaged per-image difference, points) split in two,
    by the method of moments: ``within``, one seed's own luck on an image (the spread over seeds of an image's
    outcome, averaged over images; of the pair's difference when ``paired``, else the two arms' summed), which
    averaging n seeds divides by n; and ``between``, the rest: how much the arms' true per-image difference varies
    over these images, which no number of seeds changes (clipped at 0).

    ``between`` is a fact of these images, but it is estimated through the seeds' luck, which it subtracts: from
    3 seeds its 95 % interval is often ±50 % or more. ``between_low``/``between_high`` (clipped at 0) are that
    interval by the jackknife over seeds (leave one seed of one arm out, or one pair when ``paired``): the seeds are
    the draws, the images stay; with fewer than 3 seeds in an arm (2 pairs), [0, ∞)."""
    between, within = _floor_and_luck(t, b, paired)
    leave_out = [(np.delete(t, i, 0), np.delete(b, i, 0)) for i in range(len(t))] if paired else \
        [(np.delete(t, i, 0), b) for i in range(len(t))] + [(t, np.delete(b, i, 0)) for i in range(len(b))]
    if min(len(x) for pair in leave_out for x in pair) < 2:
        low, high = 0.0, math.inf
    else:
        replicates = np.array([_floor_and_luck(t_out, b_out, paired)[0] for t_out, b_out in leave_out])
        groups = [replicates] if paired else [replicates[:len(t)], replicates[len(t):]]
        variance = sum((len(g) - 1) / len(g) * float(((g - g.mean()) ** 2).sum()) for g in groups)
        half = float(st.norm.isf((1 - confidence) / 2)) * math.sqrt(variance)
        low, high = max(between - half, 0.0), max(between + half, 0.0)
    return dict(between=max(between, 0.0), within=within, between_low=low, between_high=high)


def _floor_and_luck(t: np.ndarray, b: np.ndarray, paired: bool) -> Tuple[float, float]:
    """(between, unclipped; within) of ``_image_variance_parts``."""
    per_image = 100 * (t.mean(axis=0) - b.mean(axis=0))
    if paired:
        within = float((100 * (t - b)).var(axis=0, ddof=1).mean())
        seeds_term = within / len(t)
    else:
        within_t, within_b = (float((100 * x).var(axis=0, ddof=1).mean()) for x in (t, b))
        within = within_t + within_b
        seeds_term = within_t / len(t) + within_b / len(b)
    return float(per_image.var(ddof=1)) - seeds_term, within


def correctness_by_seed(runs: pd.DataFrame, arm: str, metric: str = DEFAULT_METRIC, min_seeds: int = 2
                        ) -> Tuple[Optional[pd.DataFrame], Optional[np.ndarray], str]:
    """(per-image correctness, one row per seed, indexed by seed; the labels; "") of the arm's finished runs from
    their ``predictions.npz`` (a seed that finished twice: the mean of its runs), or (None, None, why not). A file
    whose accuracy is not the run's recorded ``metric`` is refused, not used: it is another run's, or stale."""
    rows = runs[(runs["arm"] == arm) & runs["used"]]
    by_seed: Dict[Any, List[np.ndarray]] = {}
    target = None
    missing = 0
    for run_dir, run_seed, recorded in zip(rows["run_dir"], rows["seed"], pd.to_numeric(rows[metric])):
        read = read_predictions(run_dir)
        if read is None or not len(read[1]):
            missing += 1
            continue
        predicted, labels = read
        correct = (predicted == labels).astype(float)
        if not math.isclose(100 * correct.mean(), recorded, abs_tol=1e-6):
            return None, None, (f"the {PREDICTIONS_FILE} of {run_dir} gives {metric} {100 * correct.mean():.2f}, "
                                f"its record {recorded:.2f}")
        if target is not None and not np.array_equal(labels, target):
            return None, None, f"the runs of {arm} were scored on different validation images"
        target = labels
        by_seed.setdefault(run_seed, []).append(correct)
    if missing:
        return None, None, (f"{missing} of {len(rows)} finished runs of {arm} have no readable {PREDICTIONS_FILE} "
                            "(recorded by older code, or read from wandb)")
    if len(by_seed) < min_seeds:
        return None, None, f"fewer than {min_seeds} seeds of {arm} with predictions"
    return pd.DataFrame([np.mean(v, axis=0) for v in by_seed.values()], index=list(by_seed)), target, ""


def _images_and_seeds(c: Comparison, runs: pd.DataFrame, t_arm: str, b_arm: str) -> None:
    """Fill ``c``'s images + seeds fields, or ``images_why``; paired by seed as ``c`` is."""
    t, t_target, why = correctness_by_seed(runs, t_arm)
    b, b_target, why_b = correctness_by_seed(runs, b_arm) if not why else (None, None, "")
    why = why or why_b
    if not why and not np.array_equal(t_target, b_target):
        why = "the two arms were scored on different validation images"
    paired = _paired(c)
    if not why and paired:  # the seeds the seed test paired, in one order for both
        common = [seed for seed in t.index if seed in set(b.index)]
        t, b = t.loc[common], b.loc[common]
        why = "" if len(common) >= 2 else "fewer than 2 seeds that both arms have, with predictions"
    if why:
        c.images_why = why
        return
    result = images_and_seeds_test(t.to_numpy(), b.to_numpy(), c.margin, paired=paired)
    c.images_ci_low, c.images_ci_high = result["ci_low"], result["ci_high"]
    c.images_p_equivalence, c.images_p_difference = result["p_equivalence"], result["p_difference"]
    c.images_count, c.images_between_var, c.images_within_var = result["images"], result["between"], result["within"]
    c.images_between_var_low, c.images_between_var_high = result["between_low"], result["between_high"]


def _claims(c: Comparison) -> Tuple[bool, bool]:
    """(equivalent, different) at α after the correction: by the seed test, and by ``images_and_seeds_test`` as
    well where it was computed."""
    images = math.isfinite(c.images_p_difference_adj)
    equivalent = c.p_equivalence_adj < ALPHA and (not images or c.images_p_equivalence_adj < ALPHA)
    different = c.p_difference_adj < ALPHA and (not images or c.images_p_difference_adj < ALPHA)
    return equivalent, different


def _advise_seeds(c: Comparison, alpha: float) -> None:
    """The seeds (pairs when paired) that would settle ``c`` at 80 % power, at level ``alpha``: by the seed test,
    or, where the images + seeds test was computed, by that test, whose images term more seeds never remove. The
    range's low end takes the low ends of the seed SD's and the floor's intervals, its high end their high ends;
    no count where even the floor's low end leaves under 80 % power."""
    low, high = _images_ends(c)
    c.seeds_alpha = alpha
    c.seeds_never = _floor_forbids(c, alpha, low)
    c.seeds_maybe_never = not c.seeds_never and _floor_forbids(c, alpha, high)
    c.seeds_low, c.seeds_high = (None, None) if c.seeds_never else \
        _seeds_range(c.diff, c.noise_sd, c.noise_dof, c.margin, _paired(c), alpha, low, high)


def _floor_forbids(c: Comparison, alpha: float, images: Tuple[float, float, int]) -> bool:
    """Whether the images' noise alone, at this floor, leaves ``c`` under 80 % power however many seeds."""
    return bool(c.images_count) and \
        _power(c.diff, 0.0, math.inf, c.margin, _paired(c), alpha, images) < POWER


def _paired(c: Comparison) -> bool:
    return c.test == PAIRED_TEST


def _images_term(c: Comparison) -> Tuple[float, float, int]:
    """(between, within, images) of ``c``'s images + seeds test, or ``NO_IMAGES`` where it has none."""
    return (c.images_between_var, c.images_within_var, c.images_count) if c.images_count else NO_IMAGES


def _images_ends(c: Comparison) -> Tuple[Tuple[float, float, int], Tuple[float, float, int]]:
    """``_images_term`` at the low and at the high end of the floor's 95 % interval."""
    if not c.images_count:
        return NO_IMAGES, NO_IMAGES
    return ((c.images_between_var_low, c.images_within_var, c.images_count),
            (c.images_between_var_high, c.images_within_var, c.images_count))


def _sd_interval(sd: float, df: int) -> Tuple[float, float]:
    """The 95 % interval of an SD estimated on ``df`` degrees of freedom (chi-square)."""
    return sd * math.sqrt(df / st.chi2.ppf(1 - ALPHA / 2, df)), sd * math.sqrt(df / st.chi2.ppf(ALPHA / 2, df))


def _seeds_range(diff: float, sd: float, df: int, margin: float, paired: bool, alpha: float = ALPHA,
                 images: Tuple[float, float, int] = NO_IMAGES, images_high: Optional[Tuple[float, float, int]] = None
                 ) -> Tuple[Optional[int], Optional[int]]:
    """Seeds needed, at level ``alpha``, at the two ends of the 95 % interval of the SD estimate (``df`` dof): the
    low end with ``images``, the high end with ``images_high`` (the floor's high end; default: ``images``)."""
    low, high = _sd_interval(sd, df)
    return (_seeds_for(diff, low, margin, paired, alpha, images),
            _seeds_for(diff, high, margin, paired, alpha, images if images_high is None else images_high))


def _seeds_for(diff: float, sd: float, margin: float, paired: bool, alpha: float = ALPHA,
               images: Tuple[float, float, int] = NO_IMAGES) -> Optional[int]:
    """The fewest seeds per arm (pairs when paired), from 2, at which ``_power`` reaches 80 %: to show equivalence
    when |d| < margin, else the difference; None past ``MAX_SEEDS``. A search over counts, by hand: statsmodels'
    power classes take one effect size over the seeds' SD, where the images term does not shrink with the seeds,
    and their ``solve_power`` can miss at large effects (it settles 2 pairs where their own ``power`` gives 0.11)."""
    def reaches(seeds: int) -> bool:
        return _power(diff, sd, seeds, margin, paired, alpha, images) >= POWER

    if not (math.isfinite(sd) and sd > 0) or not reaches(MAX_SEEDS):
        return None
    return _fewest(reaches, 2, MAX_SEEDS)


def _fewest(reaches: Callable[[int], bool], low: int, high: int) -> int:
    """The smallest n in [low, high] for which ``reaches`` holds, given that it holds at ``high`` and, once it holds,
    for every larger n (power grows with the seeds and with the images)."""
    while low < high:
        middle = (low + high) // 2
        if reaches(middle):
            high = middle
        else:
            low = middle + 1
    return low


def _power(diff: float, sd: float, seeds: float, margin: float, paired: bool, alpha: float,
           images: Tuple[float, float, int]) -> float:
    """Power of the test at ``seeds`` per arm (pairs when paired; ``math.inf``: the limit) against a true difference
    ``diff`` with seed SD ``sd`` (of the pairs' differences when paired). The seed test's SE² is sd² · 2 / seeds
    (sd² / pairs); the images + seeds test adds (between + within / seeds) / images (``_image_variance_parts``),
    on the same validation images. The seed test's degrees of freedom. The equivalence side (|d| < margin) is the
    nearer bound's one-sided test, as statsmodels' power classes take it."""
    between, within, count = images
    per_arm = 1 if paired else 2
    if math.isinf(seeds):
        se, dof = math.sqrt(between / count), math.inf
    else:
        se = math.sqrt(sd ** 2 * per_arm / seeds + (between + within / seeds) / count)
        dof = seeds - 1 if paired else 2 * seeds - 2
    equivalence_side = abs(diff) < margin
    distance = margin - abs(diff) if equivalence_side else abs(diff)
    if se == 0:
        return 1.0 if distance > 0 else 0.0
    return _t_power(distance / se, dof, alpha, two_sided=not equivalence_side)


def _t_power(effect: float, dof: float, alpha: float, two_sided: bool) -> float:
    """Power of a t test at noncentrality ``effect`` (≥ 0) on ``dof`` degrees of freedom, as statsmodels computes it.
    A tail scipy's noncentral t cannot compute (NaN, far out at large noncentralities) is the normal's, as is
    either tail at infinite ``dof``."""
    level = alpha / 2 if two_sided else alpha
    t_crit, z_crit = (st.t.isf(level, dof) if math.isfinite(dof) else math.nan), st.norm.isf(level)
    upper = st.nct.sf(t_crit, dof, effect) if math.isfinite(dof) else math.nan
    if not math.isfinite(upper):
        upper = st.norm.sf(z_crit - effect)
    if not two_sided:
        return float(upper)
    lower = st.nct.cdf(-t_crit, dof, effect) if math.isfinite(dof) else math.nan
    if not math.isfinite(lower):
        lower = st.norm.cdf(-z_crit - effect)
    return float(upper + lower)


def _name(arm: str, runs: pd.DataFrame) -> str:
    """``attention`` for the arm ``mixer=attn``; any longer label as it is."""
    mixer = runs.loc[runs["arm"] == arm, "mixer"].iloc[0] if "mixer" in runs else None
    return DISPLAY.get(mixer, arm) if arm == f"mixer={mixer}" else arm


def outcome_text(c: Comparison, names: Tuple[str, str]) -> str:
    """The statistical outcome of a corrected comparison (``p_*_adj`` filled)."""
    if c.outcome.startswith(INSUFFICIENT):
        return c.outcome
    equivalent, different = _claims(c)
    seeds_equivalent, seeds_different = c.p_equivalence_adj < ALPHA, c.p_difference_adj < ALPHA
    if not (equivalent or different) and (seeds_equivalent or seeds_different):
        seeds_claim = _better(c, names, seeds_alone=True) if seeds_different else f"equivalent within ±{c.margin:g}"
        return (f"{INCONCLUSIVE} once the validation images' own noise is counted ({IMAGES_AND_SEEDS}: "
                f"{c.diff:+.2f} [{c.images_ci_low:+.2f}, {c.images_ci_high:+.2f}]; the seeds alone: {seeds_claim}); "
                f"{seeds_advice(c)}")
    if different:
        better = _better(c, names)
        claim = f"equivalent within ±{c.margin:g}, yet different ({better})" if equivalent else better
        return claim + permutation_caveat(c)
    if equivalent:
        return f"equivalent within ±{c.margin:g}" + permutation_caveat(c)
    return f"{INCONCLUSIVE}: {seeds_advice(c)}"


def permutation_caveat(c: Comparison) -> str:
    """"" where the seeds' permutation test, corrected as the t tests are, supports every claim the comparison
    makes; else the condition the claim rests on, what that test gives, and, where these counts of seeds cannot
    reach the corrected level at all, how many could."""
    equivalent, different = _claims(c)
    unsupported = [(what, p) for what, claimed, p in (
        ("difference", different, c.permutation_p_difference_adj),
        ("equivalence", equivalent, c.permutation_p_equivalence_adj)) if claimed and math.isfinite(p) and p >= ALPHA]
    if not unsupported:
        return ""
    gives = " and ".join(f"{p_equals(p)} for the {what}" for what, p in unsupported)
    text = (f", if the seeds' spread is normal: the {PERMUTATION} test over seeds, which does not assume so, gives "
            f"{gives} ({CORRECTED})")
    if c.permutation_floor >= c.seeds_alpha:
        unit = "pairs" if _paired(c) else "seeds per arm"
        counts = f"{c.n_treatment} pairs" if _paired(c) else f"{c.n_treatment} and {c.n_baseline} seeds"
        needed = permutation_seeds(c.seeds_alpha, _paired(c))
        reach = f"{needed} or more {unit} could reach α = {c.seeds_alpha:.2g}" if needed else \
            f"no number of {unit} could reach α = {c.seeds_alpha:.2g}"
        text += f"; {counts} can give no p below {p_text(c.permutation_floor)}, and {reach}"
    return text


def seeds_advice(c: Comparison) -> str:
    """``about 4–27 seeds per arm would settle it (80 % power at the corrected α = 0.013)``, or why no count would:
    past ``MAX_SEEDS``, or the validation images' own noise alone (``seeds_never``: even at the low end of the
    floor's interval), then what would instead; or, where only the floor's high end forbids a count
    (``seeds_maybe_never``), the fewest seeds that might do and the images that would."""
    level = "" if c.seeds_alpha == ALPHA else f" at the corrected α = {c.seeds_alpha:.2g}"
    paired = _paired(c)
    unit = "pairs" if paired else "seeds per arm"
    low, high = _images_ends(c)
    if c.seeds_never:
        floor = math.sqrt(low[0] / c.images_count)
        needed = _images_needed(c.diff, c.margin, paired, c.seeds_alpha, low)
        text = (f"no number of seeds would settle it on these {c.images_count} validation images: their own noise "
                f"(SE at least {floor:.2f} points however many seeds, at the low end of its 95 % interval) leaves "
                f"under {POWER * 100:.0f} % power{level}; more validation images would (at least {needed:,}, with "
                "many seeds)")
        if c.seeds_alpha < ALPHA and not _floor_forbids(c, ALPHA, low):
            alone = _seeds_range(c.diff, c.noise_sd, c.noise_dof, c.margin, paired, ALPHA, low, high)
            text += (f", or perhaps this comparison alone, fixed in advance at α = {ALPHA:g}, on about "
                     f"{_span(*alone)} new {unit}")
        return text
    if c.seeds_low is None and c.seeds_high is None:
        return f"more than {MAX_SEEDS} {unit} would be needed ({POWER * 100:.0f} % power{level})"
    images = f", the {c.images_count} validation images' noise counted" if c.images_count else ""
    if c.seeds_maybe_never:
        maybe = f"{c.seeds_low} or more {unit} might settle it ({POWER * 100:.0f} % power{level}{images}), or none"
        if not math.isfinite(high[0]):  # 2 seeds: a seed left out leaves no spread to subtract the luck with
            return (f"{maybe}: with 2 {'pairs' if paired else 'seeds'}, the part of the images' noise that more seeds "
                    "do not remove cannot be told from one seed's luck")
        needed = _images_needed(c.diff, c.margin, paired, c.seeds_alpha, high)
        return (f"{maybe}: near the high end of its 95 % interval, the images' own noise alone leaves under "
                f"{POWER * 100:.0f} % power; with many seeds, {needed:,} validation images would even there")
    text = f"about {_span(c.seeds_low, c.seeds_high)} {unit} would settle it ({POWER * 100:.0f} % power{level}{images})"
    shape_free = permutation_seeds(c.seeds_alpha, paired)
    if shape_free and c.seeds_low is not None and c.seeds_low < shape_free:  # a claim it could not support: a caveat
        text += f", {shape_free} or more for the {PERMUTATION} test over seeds to reach that level too"
    return text


def _images_needed(diff: float, margin: float, paired: bool, alpha: float, images: Tuple[float, float, int]) -> int:
    """The fewest validation images, with the arms' per-image difference spread as ``between`` says, at which
    infinitely many seeds would reach 80 % power: a lower bound on the validation set that could settle it."""
    between, within, _ = images

    def reaches(count: int) -> bool:
        return _power(diff, 0.0, math.inf, margin, paired, alpha, (between, within, count)) >= POWER

    low, high = 2, 2
    while not reaches(high):  # no bound is known in advance: double until one holds
        low, high = high, high * 2
    return _fewest(reaches, low, high)


def _span(low: Optional[int], high: Optional[int]) -> str:
    """``4–27``, ``12``, ``7–>1000``: a seeds range, None past ``MAX_SEEDS``."""
    low_text, high_text = (str(n) if n is not None else f">{MAX_SEEDS}" for n in (low, high))
    return low_text if low_text == high_text else f"{low_text}–{high_text}"


def _better(c: Comparison, names: Tuple[str, str], seeds_alone: bool = False) -> str:
    """``shift better by 0.50 [0.20, 0.80]``: the winner, and the difference with its CI from its side; the CI of
    the test that counts the validation images too where there is one (unless ``seeds_alone``)."""
    low, high = (c.ci_low, c.ci_high) if seeds_alone or not math.isfinite(c.images_ci_low) else \
        (c.images_ci_low, c.images_ci_high)
    winner, d, lo, hi = (names[0], c.diff, low, high) if c.diff > 0 else (names[1], -c.diff, -high, -low)
    return f"{winner} better by {d:.2f} [{lo:.2f}, {hi:.2f}]"


def verdict_text(c: Comparison, names: Tuple[str, str] = ("treatment", "baseline")) -> str:
    """What the comparison can claim: the outcome, unless the budget or the testbed forbids the claim, with the
    seeds that did not finish where there are any (the tests of the means read finished seeds only) and, where
    either arm diverged, what Fisher's test of the divergence counts finds."""
    # what every claim below holds under: the seeds that did not finish or have no pair, a recipe that differs too,
    # and a testbed whose headroom was not checked
    conditions = "".join([
        _unfinished_clause(c, names),
        f"; {NO_VALUE}: {c.no_value}" if c.no_value else "",
        f"; {UNPAIRED}: {c.unpaired}" if c.unpaired else "",
        f"; {OTHER_RECIPE} ({c.recipe_differs}): the difference is theirs together" if c.recipe_differs else "",
        f"; {HEADROOM_UNCHECKED}, {c.headroom_unchecked}: report where the runs' data lies" if c.headroom_unchecked
        else ""])
    if c.outcome.startswith(INSUFFICIENT):  # with why, and the way out
        return c.outcome + (f"; {NOT_MATCHED} ({c.budget})" if c.budget_matched is False else "") + conditions
    if c.budget_matched is False:
        return f"{NOT_MATCHED} ({c.budget})" + conditions
    if c.ceiling:
        # a real difference survives, stated with where it was measured; an equivalence on such a testbed does not
        if _claims(c)[1]:
            return f"{_better(c, names)}{permutation_caveat(c)}; on a testbed where {c.ceiling}{conditions}"
        return f"{NO_HEADROOM}: {c.ceiling}{conditions}"
    return c.outcome + conditions


def _unfinished_clause(c: Comparison, names: Tuple[str, str]) -> str:
    """``; seeds that did not finish, in no test of the means: shift: 4 of 5 seeds diverged; shift diverges more
    often than attention (0 of 5 seeds; Fisher p = 0.048, Holm)``; "" when every seed finished."""
    if not c.unfinished:
        return ""
    text = f"; {UNFINISHED}: {c.unfinished}"
    if not math.isfinite(c.diverged_p_adj):
        return text
    fisher = f"Fisher {p_equals(c.diverged_p_adj)}, {CORRECTED}"
    if c.diverged_p_adj >= ALPHA:
        return f"{text}; divergence counts not shown to differ ({fisher})"
    arms = [(names[0], c.diverged_treatment, c.trained_treatment), (names[1], c.diverged_baseline, c.trained_baseline)]
    (more, _, _), (fewer, k, n) = sorted(arms, key=lambda arm: arm[1] / arm[2], reverse=True)
    return f"{text}; {more} {DIVERGES_MORE} than {fewer} ({k} of {n} seeds diverged; {fisher})"


def more_seeds_way_out(finished: Sequence[pd.Series], statuses: Sequence[Sequence[str]],
                       names: Sequence[str], paired: bool = False) -> str:
    """The way out of too few finished seeds in a comparison (each arm's finished values, indexed by seed, its
    ``seed_statuses`` and name): ``ADD_SEEDS``, unless an arm short of 2 finished seeds (paired: the arms short of
    2 complete pairs) is short because its seeds diverged (``shift: 3 of 3 seeds diverged; more seeds of a recipe
    that diverges ...``)."""
    pairs = len(set.intersection(*(set(values.dropna().index) for values in finished))) if paired else None
    short = []
    for values, arm_statuses_, name in zip(finished, statuses, names):
        diverged, trained = _diverged_of_trained(arm_statuses_)
        if diverged and (pairs < 2 if paired else values.count() < 2):
            short.append(f"{name}: {diverged} of {trained} seeds diverged")
    return f"{'; '.join(short)}; {STEADIER_RECIPE}" if short else ADD_SEEDS


def _diverged_of_trained(statuses: Sequence[str]) -> Tuple[int, int]:
    """An arm's diverged seeds, and its seeds that trained to the end or diverged, from its ``seed_statuses``."""
    return list(statuses).count(DIVERGED), sum(s in TRAINED_STATUSES for s in statuses)


def divergence_test(treatment: Sequence[str], baseline: Sequence[str]) -> Tuple[int, int, int, int, float]:
    """(treatment's diverged seeds, its seeds that trained to the end or diverged, the baseline's two, Fisher's exact
    two-sided p of diverged against finished; scipy) from each arm's ``seed_statuses``. A failed or interrupted seed
    (a crash, a kill) tells nothing of the arm and is left out; p is NaN where neither arm diverged or an arm has no
    seed left. A divergence is the arm's own result, so an arm whose seeds diverge more often is a finding that the
    tests of the means, which read finished seeds only, cannot show."""
    (k_t, n_t), (k_b, n_b) = _diverged_of_trained(list(treatment)), _diverged_of_trained(list(baseline))
    if not (k_t or k_b) or not (n_t and n_b):
        return k_t, n_t, k_b, n_b, math.nan
    return k_t, n_t, k_b, n_b, float(st.fisher_exact([[k_t, n_t - k_t], [k_b, n_b - k_b]]).pvalue)


def arm_statuses(runs: pd.DataFrame, arms: Iterable[str]) -> Dict[str, List[str]]:
    """Each arm's ``seed_statuses``, read once for every test and text that counts them."""
    return {arm: seed_statuses(runs[runs["arm"] == arm]) for arm in dict.fromkeys(arms)}


def no_value_text(runs: pd.DataFrame, arm: str, metric: str) -> str:
    """``2 of 5 seeds recorded no ema_val_top1``: the arm's finished seeds none of whose runs recorded ``metric``
    (``without_value``), which no mean or test can read, of all its seeds ("" when there are none)."""
    missing = without_value(runs, arm, metric)
    seeds = runs.loc[runs["arm"] == arm, "seed"].nunique(dropna=False)
    return f"{missing} of {seeds} seeds recorded no {metric}" if missing else ""


def unpaired_text(treatment: pd.Series, baseline: pd.Series, names: Sequence[str]) -> str:
    """``shift: seeds 3, 4``: each arm's finished seeds (its values, indexed by seed) that the other arm has no
    finished run of, which a test paired by seed leaves out (empty when every seed has its pair)."""
    t, b = set(treatment.dropna().index), set(baseline.dropna().index)
    parts = [f"{name}: seed{'s' if len(alone) > 1 else ''} {', '.join(map(str, sorted(alone)))}"
             for alone, name in ((t - b, names[0]), (b - t, names[1])) if alone]
    return "; ".join(parts)


def unfinished_text(statuses: Sequence[Sequence[str]], names: Sequence[str]) -> str:
    """``attention: 2 of 5 seeds diverged``: per arm (its ``seed_statuses``, its name), its seeds that did not
    finish (empty when every seed of every arm did)."""
    parts = [f"{name}: {text}" for seeds, name in zip(statuses, names)
             if (text := failures_text(seeds, UNFINISHED_STATUSES))]
    return "; ".join(parts)


# --- budgets, baselines ------------------------------------------------------------------------------------------
def budget_percent(relative: float) -> str:
    """``+2.4``, ``−47``: one decimal below 10 %, where the tolerance (a few %) is decided, so that a budget just
    over it never reads as within it (+2.4 % is not "+2 %")."""
    percent = relative * 100
    return f"{percent:+.1f}".replace("-", "−") if abs(percent) < 10 else f"{percent:+.0f}".replace("-", "−")


def budget_difference(runs: pd.DataFrame, treatment: str, baseline: str, tolerance: Optional[float] = None
                      ) -> Tuple[str, Optional[bool]]:
    """(``-47 % MACs``, matched?) of the treatment arm's budget against the baseline's. The budget is what
    the runs matched (``match=params``: parameters; otherwise MACs); the tolerance is the runs' recorded one,
    else ``default_tolerance()``."""
    t_runs, b_runs = runs[runs["arm"] == treatment], runs[runs["arm"] == baseline]
    quantity = "params" if set(t_runs.get("match", [])) == {MATCH_PARAMS} else "macs"
    t_cost, b_cost = _mean(t_runs, quantity), _mean(b_runs, quantity)
    if not (math.isfinite(t_cost) and math.isfinite(b_cost) and b_cost > 0):
        return "", None
    if tolerance is None:
        recorded = pd.to_numeric(t_runs.get("tolerance", pd.Series(dtype=float)), errors="coerce").dropna()
        tolerance = float(recorded.iloc[0]) if len(recorded) else default_tolerance()
    relative = t_cost / b_cost - 1
    label = "MACs" if quantity == "macs" else "params"
    text = f"{budget_percent(relative)} % {label}"
    if tolerance != default_tolerance():  # a looser match than the default is said where it is judged
        text += f", ±{budget_percent(tolerance).lstrip('+')} % tolerance"
    targets = {*t_runs.get("budget_target", pd.Series(dtype=object)), *b_runs.get("budget_target",
                                                                                 pd.Series(dtype=object))}
    if len(targets) == 1 and None not in targets and not pd.isna(next(iter(targets))):
        # each within its tolerance of one solved budget, so at most (1 + t) / (1 - t) - 1 apart
        return text + " (same target)", abs(relative) <= ((1 + tolerance) / (1 - tolerance) - 1 if tolerance < 1
                                                          else math.inf)
    return text, abs(relative) <= tolerance


def _differing_columns(runs: pd.DataFrame, a: str, b: str) -> List[str]:
    columns = [c for c in runs.attrs.get("arm_columns", []) if c in runs]
    ra, rb = runs[runs["arm"] == a].iloc[0], runs[runs["arm"] == b].iloc[0]
    return [c for c in columns if value_text(ra[c]) != value_text(rb[c])]


def recipe_difference(runs: pd.DataFrame, treatment: str, baseline: str) -> str:
    """``epochs 3 vs 1``: the recipe settings two arms differ in where they differ in something else too (a mixer
    at other epochs), else "". The budget matches a forward pass; a difference measured across recipes is the
    mixer's and the recipe's together. Arms that differ in the recipe alone (a training-scheme ablation) compare
    recipes, which is their question."""
    differing = _differing_columns(runs, treatment, baseline)
    recipe = [c for c in differing if is_recipe_column(c)]
    if not recipe or len(recipe) == len(differing):
        return ""
    rt, rb = runs[runs["arm"] == treatment].iloc[0], runs[runs["arm"] == baseline].iloc[0]
    return ", ".join(f"{c} {value_text(rt[c])} vs {value_text(rb[c])}" for c in recipe)


def _pairs(runs: pd.DataFrame, treatment: Optional[ArmSpec], baseline: Optional[ArmSpec]
           ) -> Tuple[List[Tuple[str, str]], List[str]]:
    """((treatment arm, baseline arm) pairs, treatment arms without a baseline). ``baseline`` (default: the ``attn``
    arm) may match several arms (e.g. one per dataset): each treatment arm is compared with the one on the same data
    that differs from it in the fewest keys; a tie is an error asking for a narrower filter. A treatment arm with no
    baseline arm on its data is left out (``verdicts`` names them): a comparison across data sets says nothing about
    the mixer."""
    _require_arms(runs)
    spec = DEFAULT_BASELINE if baseline is None else baseline
    baselines = arms_matching(runs, spec)
    if not baselines:
        raise ValueError(f"no baseline arm: nothing matches {describe(spec)}; name one with baseline=ARM (--baseline)")
    treatments = arms_matching(runs, treatment)
    if treatment is not None and not treatments:
        select_arm(runs, treatment)  # raises the one-line error naming the arms
    treatments = [a for a in treatments if a not in baselines]
    data_of = runs.groupby("arm", sort=False)["data_config"].first() if "data_config" in runs else None
    pairs, unpaired = [], []
    for arm in treatments:
        candidates = [b for b in baselines if data_of is None or data_of[b] == data_of[arm]]
        if not candidates:
            unpaired.append(arm)
            continue
        distance = {b: len(_differing_columns(runs, arm, b)) for b in candidates}
        best = min(distance.values())
        nearest = [b for b, d in distance.items() if d == best]
        if len(nearest) > 1:
            raise ValueError(f"baseline {describe(spec)} matches {len(nearest)} arms equally near the arm {arm} "
                             f"(on its data): {'; '.join(nearest)}; narrow it to one, e.g. '{nearest[0]}'")
        pairs.append((arm, nearest[0]))
    return pairs, unpaired


def check_margin(margin: float, key: str = "margin=") -> float:
    """The equivalence margin: a positive, finite number of top-1 points (``key`` names it in the error: the API's
    ``margin=``, the report's ``--margin ``). Raises ``ValueError``."""
    if not (math.isfinite(margin) and margin > 0):
        raise ValueError(f"{key}{margin:g} must be a positive number of top-1 points (default {DEFAULT_MARGIN:g}), "
                         f"e.g. {key}1.0")
    return margin


def verdicts(runs: pd.DataFrame, treatment: Optional[ArmSpec] = None, baseline: Optional[ArmSpec] = None,
             metric: str = DEFAULT_METRIC, margin: float = DEFAULT_MARGIN, pair_by: Optional[str] = None,
             tolerance: Optional[float] = None, correction: Optional[str] = CORRECTION,
             testbeds: Optional[Dict[str, Testbed]] = None) -> pd.DataFrame:
    """One row per comparison of a treatment arm with its baseline arm (see ``_pairs``), p-values
    corrected over all rows (Holm), the budget and the testbed's headroom checked. ``treatment``/``baseline``:
    an arm label, a mixer name or a filter (``{"mixer": "shift", "gamma": "1/12"}``); ``pair_by="seed"``
    pairs complete seeds instead of Welch's unpaired test; ``testbeds`` maps a run's ``data_config`` to its
    ``headroom.Testbed`` (computed and cached when not given)."""
    if pair_by not in (None, "seed"):
        raise ValueError(f"pair_by={pair_by!r}: only 'seed' (or None, unpaired) is supported")
    check_margin(margin)
    if tolerance is not None:
        check_tolerance(tolerance)
    check_metric(runs, metric)
    pairs, unpaired = _pairs(runs, treatment, baseline)
    statuses = arm_statuses(runs, [arm for pair in pairs for arm in pair])
    names = [(_name(t_arm, runs), _name(b_arm, runs)) for t_arm, b_arm in pairs]
    comparisons = []
    for (t_arm, b_arm), pair_names in zip(pairs, names):
        finished = [finished_values(runs, arm, metric) for arm in (t_arm, b_arm)]
        comparisons.append(compare(*finished, margin, paired=pair_by == "seed", names=(t_arm, b_arm),
                                   more_seeds=more_seeds_way_out(finished, [statuses[t_arm], statuses[b_arm]],
                                                                 pair_names, paired=pair_by == "seed")))
    tested = [c for c in comparisons if not c.outcome.startswith(INSUFFICIENT)]
    for c, (t_arm, b_arm) in zip(comparisons, pairs):  # an arm whose every seed diverged is a result too
        # every seed of the two arms, paired or not: a diverged seed has no pair
        c.diverged_treatment, c.trained_treatment, c.diverged_baseline, c.trained_baseline, c.diverged_p = \
            divergence_test(statuses[t_arm], statuses[b_arm])
    beds = [_testbed(runs, pair, testbeds) for pair in pairs]
    for c, (t_arm, b_arm), bed in zip(comparisons, pairs, beds):
        c.budget, c.budget_matched = budget_difference(runs, t_arm, b_arm, tolerance)
        c.recipe_differs = recipe_difference(runs, t_arm, b_arm)
        c.ceiling = _ceiling(runs, t_arm, b_arm, metric, margin, bed) or ""
        c.headroom_unchecked = (bed.unbuilt or "") if bed is not None else ""
    if metric == DEFAULT_METRIC:  # the predictions are the final model's, and the raw pixels score top-1
        tested_ids = {id(c) for c in tested}
        for c, (t_arm, b_arm), bed in zip(comparisons, pairs, beds):
            if id(c) in tested_ids:
                _images_and_seeds(c, runs, t_arm, b_arm)
                _beats_raw(c, runs, t_arm, b_arm, margin, bed)
    # the seeds advice at the level the correction holds a comparison to at worst, by the test the verdict reads
    for c in tested:
        _advise_seeds(c, ALPHA / len(tested) if correction and len(tested) > 1 else ALPHA)
    with_images = [c for c in tested if math.isfinite(c.images_p_difference)]
    with_raw = [c for c in tested if math.isfinite(c.beats_raw_p)]
    with_divergence = [c for c in comparisons if math.isfinite(c.diverged_p)]
    for family, fields in ((tested, ("p_equivalence", "p_difference",
                                     "permutation_p_equivalence", "permutation_p_difference")),
                           (with_images, ("images_p_equivalence", "images_p_difference")),
                           (with_raw, ("beats_raw_p",)), (with_divergence, ("diverged_p",))):
        for field in fields if family else ():
            raw = [getattr(c, field) for c in family]
            adjusted = multipletests(raw, alpha=ALPHA, method=correction)[1] if correction else raw
            for c, p in zip(family, adjusted):
                setattr(c, f"{field}_adj", float(p))
    for c, pair_names, pair in zip(comparisons, names, pairs):
        c.outcome = outcome_text(c, pair_names)
        c.unfinished = unfinished_text([statuses[arm] for arm in pair], pair_names)
        c.no_value = "; ".join(f"{name}: {text}" for arm, name in zip(pair, pair_names)
                               if (text := no_value_text(runs, arm, metric)))
        if pair_by == "seed":
            c.unpaired = unpaired_text(*(finished_values(runs, arm, metric) for arm in pair), pair_names)
        c.verdict = verdict_text(c, pair_names)
    table = pd.DataFrame([asdict(c) for c in comparisons], columns=list(Comparison.__dataclass_fields__))
    table.attrs.update(correction=correction, comparisons=len(tested), margin=margin, metric=metric,
                       test=PAIRED_TEST if pair_by else WELCH_TEST, no_baseline=unpaired)
    return table


def _testbed(runs: pd.DataFrame, arms: Sequence[str], testbeds: Optional[Dict[str, Testbed]]) -> Optional[Testbed]:
    """The one testbed the arms ran on, or None (no data config recorded, or two)."""
    if "data_config" not in runs:
        return None
    configs = set(runs.loc[runs["arm"].isin(arms), "data_config"])
    if len(configs) != 1:
        return None
    key = configs.pop()
    return (testbeds or {}).get(key) or testbeds_of(runs[runs["data_config"] == key])[key]


def _ceiling(runs: pd.DataFrame, t_arm: str, b_arm: str, metric: str, margin: float, bed: Optional[Testbed]
             ) -> Optional[str]:
    if bed is None:
        return None
    treatment, baseline = (finished_values(runs, arm, metric) for arm in (t_arm, b_arm))
    return ceiling_reason([treatment.mean(), baseline.mean()], bed, margin,
                          seeds={"treatment": treatment, "baseline": baseline})


def beats_raw_test(treatment: Sequence[float], baseline: Sequence[float], bed: Testbed, margin: float
                   ) -> Tuple[int, int, float]:
    """(treatment's seeds that beat ``bed``'s better raw-pixel baseline by more than ``margin``, baseline's, Fisher's
    exact two-sided p of those counts out of the arms' seeds; scipy). Where every seed either learns a task or
    stays near chance, how often an arm's seeds learn is the honest summary, and a mean of the two modes is not."""
    above = [count_beating_raw(values, bed, margin) for values in (treatment, baseline)]
    table = [[above[0], len(treatment) - above[0]], [above[1], len(baseline) - above[1]]]
    return above[0], above[1], float(st.fisher_exact(table).pvalue)


def _beats_raw(c: Comparison, runs: pd.DataFrame, t_arm: str, b_arm: str, margin: float, bed: Optional[Testbed]
               ) -> None:
    """Fill ``c``'s beats_raw fields on the seeds its tests used (the complete pairs when paired), where their
    testbed has a raw-pixel baseline."""
    if bed is None or bed.best_baseline is None:
        return
    t, b = finished_values(runs, t_arm), finished_values(runs, b_arm)
    if _paired(c):
        t, b = _complete_pairs(t, b)
    c.beats_raw_treatment, c.beats_raw_baseline, c.beats_raw_p = beats_raw_test(t, b, bed, margin)


# --- one-factor sweeps --------------------------------------------------------------------------------------------
def knob_of(factor: str) -> str:
    """The knob a numeric factor column measures, as a command line names it (``gamma`` for ``gamma_float``)."""
    return next((key for key, numeric in FACTORS.items() if numeric == factor), factor)


def factor_column(arm_column: str) -> Optional[str]:
    """The numeric column that measures an arm column's knob (``gamma_float`` for ``gamma``; ``FACTORS``, by a
    knob's config key or its short column name), or None for a knob that is no number."""
    return next((numeric for key, numeric in FACTORS.items() if arm_column in (key, column_name(key))), None)


def one_factor(runs: pd.DataFrame) -> Optional[str]:
    """The numeric column of the one knob the arms differ in (``gamma_float`` for γ, ``tau``, a mixer size),
    or None when the arms differ in several knobs or in a non-numeric one."""
    columns = [c for c in runs.attrs.get("arm_columns", []) if c in runs and runs[c].map(value_text).nunique() > 1]
    if len(columns) != 1:
        return None
    factor = factor_column(columns[0])
    return factor if factor in runs and pd.to_numeric(runs[factor], errors="coerce").notna().all() else None


def trend(runs: pd.DataFrame, factor: str, metric: str = DEFAULT_METRIC, margin: float = DEFAULT_MARGIN,
          testbeds: Optional[Dict[str, Testbed]] = None) -> Dict[str, Any]:
    """Least-squares slope of ``metric`` on ``factor`` over the finished seeds of every arm (statsmodels OLS)
    with its 95 % CI and p-value; NaN fields when fewer than 3 seeds or 2 levels. A seed an arm finished more
    than once is one point, its mean (``finished_values``): the same result read twice is not more evidence.
    For ``val_top1``, where every finished run recorded its predictions on the same images, ``images_ci_low``,
    ``images_ci_high`` and ``images_p`` count the validation images' own noise as well (``images_why`` says why
    not else): the OLS slope is a weighted sum of the seeds' accuracies, so it is the mean over images of the same
    weighted sum of each image's outcomes, and a new draw of images adds the variance of those per-image slopes
    ÷ the number of images to the slope's, on the fit's residual degrees of freedom (as ``images_and_seeds_test``
    does for a difference, and as conservative).
    With 3 or more levels and seeds to spare, ``lack_of_fit_p`` is the classical lack-of-fit F test: the line
    against one mean per level, on the spread of the seeds within levels. A small p says the means depart from a
    straight line, so a settled slope summarises a curve (a peak, one collapsed level) rather than describes it.
    That test pools the spread of every level; ``lack_of_fit_unequal_p`` asks the same with each level's own
    (``lack_of_fit_unequal_spread``), where every level has 2 or more seeds.
    ``permutation_p``: the slope against its values with the levels shuffled over the runs (``PERMUTATIONS`` random
    shuffles, or every one where there are fewer), which assumes no shape of the seeds' spread: a test that the
    metric does not depend on the factor at all.
    ``ceiling``: why the levels' testbed cannot separate them (``headroom.ceiling_reason`` of the levels' means,
    at ``margin``), as a verdict says it, or ""; ``headroom_unchecked``: why it could not be built here, or "".
    ``low``/``high``: the lowest and highest level fitted."""
    import statsmodels.api as sm

    levels, values, arms = [], [], []
    seeds_of: Dict[str, pd.Series] = {}  # each level's arm -> its finished seeds' values
    for arm in dict.fromkeys(runs.loc[runs["used"], "arm"]):
        level = pd.to_numeric(runs.loc[runs["arm"] == arm, factor], errors="coerce").iloc[0]  # one per arm
        if pd.notna(level):
            seeds = seeds_of[arm] = finished_values(runs, arm, metric)
            levels += [level] * len(seeds)
            values += list(seeds)
            arms.append((arm, seeds.index))
    x, y = np.array(levels, dtype=float), np.array(values, dtype=float)
    result = {"factor": factor, "runs": len(x), "levels": len(set(x)), "slope": math.nan, "ci_low": math.nan,
              "ci_high": math.nan, "p": math.nan, "images_ci_low": math.nan, "images_ci_high": math.nan,
              "images_p": math.nan, "images_why": "", "lack_of_fit_f": math.nan, "lack_of_fit_p": math.nan,
              "lack_of_fit_unequal_p": math.nan, "permutation_p": math.nan, "ceiling": "", "headroom_unchecked": "",
              "low": float(x.min()) if len(x) else math.nan, "high": float(x.max()) if len(x) else math.nan}
    bed = _testbed(runs, list(seeds_of), testbeds)
    if bed is not None:  # a slope is a comparison of the levels: the same check of the testbed as a verdict's
        result["ceiling"] = ceiling_reason([v.mean() for v in seeds_of.values()], bed, margin, seeds=seeds_of) or ""
        result["headroom_unchecked"] = bed.unbuilt or ""
    if len(x) >= 3 and len(set(x)) >= 2:
        fit = sm.OLS(y, sm.add_constant(x)).fit()
        low, high = fit.conf_int(alpha=ALPHA)[1]
        result.update(slope=float(fit.params[1]), ci_low=float(low), ci_high=float(high), p=float(fit.pvalues[1]))
        # one sample, the levels, reordered against the fixed values: n! orders (scipy counts (n!)² for two)
        result["permutation_p"] = float(st.permutation_test(
            (x,), lambda levels, axis: _slope(levels, y, axis), permutation_type="pairings", vectorized=True,
            n_resamples=PERMUTATIONS, rng=0).pvalue)
        if len(set(x)) >= 3 and len(x) > len(set(x)):
            per_level = sm.OLS(y, _level_dummies(x)[1]).fit()
            if per_level.ssr > 0:  # seeds that agree to the last digit leave no spread to test against
                f, p_value, _ = per_level.compare_f_test(fit)
                result.update(lack_of_fit_f=float(f), lack_of_fit_p=float(p_value),
                              lack_of_fit_unequal_p=lack_of_fit_unequal_spread(x, y))
        if metric == DEFAULT_METRIC:  # the predictions are the final model's
            result.update(_trend_with_images(runs, arms, x, fit))
    return result


def _level_dummies(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(the distinct levels of ``x``, ascending; the one-mean-per-level design: a 0/1 column per level)."""
    levels = np.unique(x)
    return levels, (x[:, None] == levels[None, :]).astype(float)


def lack_of_fit_unequal_spread(x: np.ndarray, y: np.ndarray) -> float:
    """p of the hypothesis that the mean of ``y`` at each level of ``x`` lies on one straight line, with each level's
    own spread: statsmodels' Wald F test of that restriction on the one-mean-per-level fit with heteroscedasticity-
    consistent (HC3) variances, which do not pool the levels' spreads as the classical lack-of-fit F test does. Where
    some seeds learn and others stay at chance, one level can spread ten times more than another. NaN with fewer
    than 3 levels, a level with one seed, or no spread to test against."""
    import statsmodels.api as sm
    from scipy.linalg import null_space

    levels, dummies = _level_dummies(x)
    if len(levels) < 3 or dummies.sum(axis=0).min() < 2:
        return math.nan
    # the level means lie on a line exactly when they are orthogonal to every vector orthogonal to 1 and the levels
    restriction = null_space(np.column_stack([np.ones_like(levels), levels]).T).T
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a level whose seeds agree exactly: the test below is then not finite
        fit = sm.OLS(y, dummies).fit(cov_type="HC3")
        try:
            p_value = float(fit.wald_test(restriction, use_f=True, scalar=True).pvalue)
        except (np.linalg.LinAlgError, ValueError):
            return math.nan
    return p_value if math.isfinite(p_value) else math.nan


def _slope(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
    """The least-squares slope of y on x along ``axis`` (the OLS fit's; x may hold many orders of the levels)."""
    dx = x - x.mean(axis=axis, keepdims=True)
    slope = (dx * (y - y.mean(axis=axis, keepdims=True))).sum(axis=axis) / (dx ** 2).sum(axis=axis)
    return np.round(slope, STATISTIC_DECIMALS)  # ties counted as ties, as in _mean_difference


def _trend_with_images(runs: pd.DataFrame, arms: List[Tuple[str, pd.Index]], x: np.ndarray, fit: Any
                       ) -> Dict[str, Any]:
    """``trend``'s images fields, from the arms' per-image correctness (one row per seed, in ``x``'s order)."""
    rows, target = [], None
    for arm, seeds in arms:
        correct, labels, why = correctness_by_seed(runs, arm, min_seeds=1)
        if not why and target is not None and not np.array_equal(labels, target):
            why = "the arms were scored on different validation images"
        if why:
            return {"images_why": why}
        target = labels
        rows.append(correct.loc[list(seeds)].to_numpy())
    outcomes = np.vstack(rows)
    weights = (x - x.mean()) / ((x - x.mean()) ** 2).sum()  # slope = weights @ accuracies
    per_image = 100 * weights @ outcomes
    se = math.sqrt(float(fit.bse[1]) ** 2 + per_image.var(ddof=1) / per_image.size)
    slope, dof = float(fit.params[1]), float(fit.df_resid)
    half = float(st.t.ppf(1 - ALPHA / 2, dof)) * se
    return {"images_ci_low": slope - half, "images_ci_high": slope + half,
            "images_p": float(2 * st.t.sf(abs(slope) / se, dof)) if se > 0 else math.nan}
