"""``python -m analysis.report SWEEP_DIR [SWEEP_DIR ...] [--out DIR] [--baseline ARM]``: a self-contained report.

Writes ``report.md`` (figures as files next to it) and ``report.html`` (figures embedded): what the testbed can
resolve (chance, raw-pixel baselines on the same split, validation-set size, binomial SE), one row per arm
(a configuration; runs that differ in anything but the seed are never pooled) with its MACs, params and failed
seeds, the verdict of every arm against the baseline arm (default: the attn arm) with Holm-corrected Welch
tests, or the trend of a one-factor sweep, runs with broken curves, every figure the runs support, and the
runs used and skipped (with why).
"""
from __future__ import annotations

import argparse
import base64
import html
import math
import os
import sys
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import pandas as pd

from shiftvit.config import ConfigError, check_tolerance
from shiftvit.multirun import MULTIRUN_FILE, PLANS_DIR, SWEEPS_DIR
from shiftvit.records import CONFIG_FILE, METRICS_FILE, PREDICTIONS_FILE, RUNNING, SUMMARY_FILE, USED_STATUSES

from .arms import ArmSpec, arms_matching, as_filter, column_name, describe
from .headroom import METHOD, Testbed, headroom_line, testbeds_of
from .load import (
    ATTEMPTS_SEPARATOR,
    CODE_COLUMN,
    MACHINE_COLUMN,
    METRICS,
    UNREADABLE_REASON,
    RepeatedSeed,
    SkippedRun,
    find_run_dirs,
    load_curves,
    load_runs,
    not_run,
)
from .stats import (
    ALPHA,
    CONFIDENCE,
    CONFIDENCE_TEXT,
    CORRECTED,
    DEFAULT_BASELINE,
    DEFAULT_MARGIN,
    DEFAULT_METRIC,
    HEADROOM_UNCHECKED,
    IMAGES_AND_SEEDS,
    INCONCLUSIVE,
    NO_HEADROOM,
    NO_HEADROOM_OF_LEVELS,
    NOT_MATCHED,
    PERMUTATION,
    PERMUTATIONS,
    POWER_TEXT,
    SEED_STATUS_ORDER,
    arm_statuses,
    budget_difference,
    check_margin,
    knob_of,
    one_factor,
    p_equals,
    p_text,
    permutation_floor,
    summarize,
    trend,
    unfinished_text,
    verdicts,
)

CI = f"{CONFIDENCE:.0%}"  # the level of every interval, as the tables name it
Section = Tuple[str, Any]
TREND_HEADING = "Trend over"  # the heading of a one-factor sweep's trend, before its knob
NO_COMPARISON = "No comparison"  # how the verdicts section starts where no comparison was made
NOT_RUN = "not run"  # the arms table's column of jobs a sweep planned and never ran
DIVERGED_SEEDS = "seeds diverged"  # the verdict table's count of diverged seeds of the seeds that trained
BEATS_RAW = "seeds beating raw pixels"  # the verdict table's count of seeds above the raw-pixel baseline + margin


def run_columns(metric: str) -> List[str]:
    """The runs table's columns: each run's value of the metric compared, and its binomial SE."""
    return ["sweep", "job", "arm", "seed", "status", metric, f"{metric}_se", "macs", "params", "train_images_per_s",
            "epochs_done"]


def counted(n: int, noun: str) -> str:
    """``1 run``, ``3 runs``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _points(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.2f}"


def _millions(value: Any) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value / 1e6:.2f} M"


def arms_table(runs: pd.DataFrame, metric: str, baselines: Dict[str, str], tolerance: Optional[float],
               unstarted: Optional[Dict[str, int]] = None) -> pd.DataFrame:
    """The per-arm table as printed: accuracy beside its noise, budget, and the budget flag against the arm's
    baseline (``baselines``: arm -> baseline arm). ``unstarted``: arm -> its jobs that the sweep planned and never
    ran (``load.not_run``), a column only when there are any."""
    table = summarize(runs, metric=metric)
    rows = []
    for _, row in table.iterrows():
        budget = ""
        if row["arm"] in baselines:
            text, matched = budget_difference(runs, row["arm"], baselines[row["arm"]], tolerance)
            budget = f"{text} ⚠ {NOT_MATCHED}" if matched is False else text
        elif row["arm"] in baselines.values():
            budget = "baseline"
        rows.append({
            "arm": row["arm"], "finished": f"{row['n']} of {row['seeds']}"
            + (f" ({row['runs']} runs)" if row["runs"] != row["seeds"] else "")
            + (f", {row['running']} running" if row["running"] else ""), "failed": row["failures"],
            **({NOT_RUN: unstarted.get(row["arm"], 0)} if unstarted else {}),
            f"mean {metric}": _points(row["mean"]),
            f"{CI} CI (seeds)": f"{_points(row['ci_low'])} – {_points(row['ci_high'])}" if row["n"] >= 2 else "",
            "seed SD": _points(row["seed_sd"]), "binomial SE": _points(row["binomial_se"]),
            "noise dominated by": row["noise"], "MACs": _millions(row["macs"]), "params": _millions(row["params"]),
            "budget vs baseline": budget})
    return pd.DataFrame(rows)


def not_run_paragraph(unstarted: Dict[str, int], without_arm: List[str]) -> str:
    """The jobs a sweep planned and never ran, said before any number: a cut-off sweep's arms may rest on fewer
    seeds than its command asked for."""
    total = sum(unstarted.values()) + len(without_arm)
    text = (f"Not run: {counted(total, 'job')} that the sweep's launches planned (its "
            f"{MULTIRUN_FILE}, and {PLANS_DIR}/ for the earlier launches) hold no record: still queued, or never "
            "started because the sweep was cut off. Relaunching the command that planned them runs them (a plan "
            f"given up: delete its file in {PLANS_DIR}/); until then each arm is compared on the seeds it has")
    if unstarted:
        text += f" (the '{NOT_RUN}' column: " + ", ".join(f"{arm} {n}" for arm, n in unstarted.items()) + ")"
    if without_arm:
        text += ". With no run of their arm at all: " + "; ".join(f"`{job}`" for job in without_arm)
    return text + "."


def running_paragraph(runs: pd.DataFrame) -> str:
    """The runs still training (their process holds the record's lock), said before any number: until they finish
    each arm is compared on the seeds that did."""
    live = runs[runs["status"] == RUNNING]
    return (f"Running: {counted(len(live), 'run')} still training, in no mean or test yet (the "
            "'finished' column counts, per arm, its seeds still training that have not finished elsewhere): each arm "
            "is compared on the seeds that finished. Run the report again when the sweep ends: "
            + ", ".join(str(d) for d in live["run_dir"]) + ".")


def unreadable_paragraph(runs: pd.DataFrame) -> str:
    """The records whose summary.json cannot be read, said before any number: each is a seed of its arm (its
    config.yaml says which) without a result, counted with the failures, not a seed that was never run."""
    damaged = runs[runs[UNREADABLE_REASON].notna()]
    return (f"Unreadable: {counted(len(damaged), 'record')} whose {SUMMARY_FILE} cannot be read, "
            "each counted as a seed of its arm without a result ('failed' column). Relaunching its job with "
            "train.resume=fresh archives the record and trains that seed again: "
            + "; ".join(f"{row['run_dir']} ({row['arm']}: {row[UNREADABLE_REASON]})" for _, row in damaged.iterrows())
            + ".")


def _interval(low: float, high: float) -> str:
    return f"{low:+.2f} – {high:+.2f}" if math.isfinite(low) else ""


def verdict_table(table: pd.DataFrame) -> pd.DataFrame:
    columns = {
        "treatment": table["treatment"], "baseline": table["baseline"],
        "n": [f"{a} vs {b}" for a, b in zip(table["n_treatment"], table["n_baseline"])],
        "difference": [(f"{d:+.2f}" if math.isfinite(d) else "") for d in table["diff"]],
        f"{CI} CI": [_interval(lo, hi) for lo, hi in zip(table["ci_low"], table["ci_high"])],
        f"p equivalence ({CORRECTED})": [p_text(p) for p in table["p_equivalence_adj"]],
        f"p difference ({CORRECTED})": [p_text(p) for p in table["p_difference_adj"]]}
    if table["images_p_difference"].notna().any():  # the validation images' noise counted too, where recorded
        columns.update({
            f"{CI} CI, {IMAGES_AND_SEEDS}": [_interval(lo, hi) for lo, hi in
                                             zip(table["images_ci_low"], table["images_ci_high"])],
            f"p equivalence, {IMAGES_AND_SEEDS} ({CORRECTED})": [p_text(p) for p in table["images_p_equivalence_adj"]],
            f"p difference, {IMAGES_AND_SEEDS} ({CORRECTED})": [p_text(p) for p in table["images_p_difference_adj"]]})
    columns.update({
        f"p equivalence, {PERMUTATION} ({CORRECTED})": [p_text(p) for p in table["permutation_p_equivalence_adj"]],
        f"p difference, {PERMUTATION} ({CORRECTED})": [p_text(p) for p in table["permutation_p_difference_adj"]]})
    if table["beats_raw_p"].notna().any():
        columns.update({
            BEATS_RAW: [f"{t:.0f} of {nt} vs {b:.0f} of {nb}" if pd.notna(t) else "" for t, nt, b, nb in
                        zip(table["beats_raw_treatment"], table["n_treatment"], table["beats_raw_baseline"],
                            table["n_baseline"])],
            f"p {BEATS_RAW}, Fisher ({CORRECTED})": [p_text(p) for p in table["beats_raw_p_adj"]]})
    if table["diverged_p"].notna().any():
        columns.update({
            DIVERGED_SEEDS: [f"{t:.0f} of {nt:.0f} vs {b:.0f} of {nb:.0f}" if math.isfinite(p) else ""
                             for t, nt, b, nb, p in zip(table["diverged_treatment"], table["trained_treatment"],
                                    table["diverged_baseline"], table["trained_baseline"], table["diverged_p"])],
            f"p {DIVERGED_SEEDS}, Fisher ({CORRECTED})": [p_text(p) for p in table["diverged_p_adj"]]})
    if table["recipe_differs"].astype(bool).any():
        columns["recipe differs"] = table["recipe_differs"]
    return pd.DataFrame({**columns, "budget": table["budget"], "verdict": table["verdict"]})


def _arm_knobs(runs: pd.DataFrame) -> str:
    """What tells the arms apart, and what the labels name that every arm shares (the mixer always labels an arm,
    so a sweep of one mixer would otherwise read as differing in it)."""
    columns = runs.attrs.get("arm_columns", [])
    varying = [c for c in columns if runs[c].map(repr).nunique() > 1]
    shared = [f"{c}={runs[c].iloc[0]}" for c in columns if c not in varying and pd.notna(runs[c].iloc[0])]
    text = f"arms differ in: {', '.join(varying)}" if varying else "one arm"
    return text + (f"; every arm has {' '.join(shared)}" if shared else "")


def code_paragraph(runs: pd.DataFrame) -> Optional[str]:
    """Which code the loaded runs ran, from their records: each commit with its number of runs, and the runs
    resumed under other code (their epochs ran under more than one commit), by name. None without the column
    (runs read from wandb before it was logged)."""
    return _attempts_paragraph(runs, CODE_COLUMN, "Code", "resumed under other code")


def machine_paragraph(runs: pd.DataFrame) -> Optional[str]:
    """On which machines the loaded runs trained (CPU, its vector instructions, GPU), as ``code_paragraph`` names
    the code: the same code gives other last bits on another CPU, and a short ReLU run can end images apart. None
    when no record names one (records from before the key)."""
    return _attempts_paragraph(runs, MACHINE_COLUMN, "Machines", "resumed on another machine")


def _attempts_paragraph(runs: pd.DataFrame, column: str, title: str, resumed: str) -> Optional[str]:
    """``<title>, as each record names it: a (3 runs), b (1 run).`` from a column of ``ATTEMPTS_SEPARATOR``-joined
    labels, one per attempt that trained, and the runs with more than one, by name."""
    if runs.empty or column not in runs or not runs[column].fillna("").astype(bool).any():
        return None
    per_run = [labels.split(ATTEMPTS_SEPARATOR) if isinstance(labels, str) and labels else []
               for labels in runs[column]]
    counts = Counter(label for labels in per_run for label in labels)  # in order of first appearance
    named = ", ".join(f"{label} ({counted(n, 'run')})" for label, n in counts.items())
    text = f"{title}, as each record names it: {named}."
    # a run that stopped before its first epoch (refused by this machine, a failed download) has no attempt to name
    trained = pd.to_numeric(runs.get("epochs_done", pd.Series(math.nan, index=runs.index)), errors="coerce") > 0
    unnamed = [bool(done) for labels, done in zip(per_run, trained) if not labels]
    for count, why in ((sum(unnamed), "written before the key"), (unnamed.count(False), "trained no epoch")):
        if count:
            text += f" {count} record{'s name' if count != 1 else ' names'} none ({why})."
    mixed = [f"{job} ({', '.join(labels)})" for job, labels in zip(runs["job"], per_run) if len(labels) > 1]
    if mixed:
        text += (f" {len(mixed)} run{'s were' if len(mixed) != 1 else ' was'} {resumed}, so "
                 f"{'their' if len(mixed) != 1 else 'its'} epochs ran under more than one: {'; '.join(mixed)}.")
    return text


def _testbed_sections(runs: pd.DataFrame, metric: str) -> Tuple[List[Section], Dict[str, Testbed]]:
    beds: Dict[str, Testbed] = testbeds_of(runs)
    lines = []
    for key in beds:
        on_it = runs[(runs["data_config"] == key)]
        means = summarize(on_it, metric=metric)["mean"].dropna()
        lines.append(headroom_line(beds[key], sorted({float(means.min()), float(means.max())}) if len(means) else []))
    text = ("What the testbed can resolve. A mixer comparison needs arms that beat a classifier which mixes no "
            "tokens at all, and a gap larger than the test-set noise. Baselines: " + METHOD + ".")
    return [("h2", "Testbed headroom"), ("p", text), *[("p", line) for line in lines]], beds


def _verdict_sections(runs: pd.DataFrame, metric: str, margin: float, baseline: Optional[ArmSpec],
                      treatment: Optional[ArmSpec], pair_by: Optional[str], tolerance: Optional[float],
                      beds: Dict[str, Testbed], without_arm: Sequence[str] = ()
                      ) -> Tuple[List[Section], Dict[str, str]]:
    """Verdicts against the baseline arm, or, without one, the trend of a one-factor sweep. ``without_arm``: the
    overrides of the jobs planned and not run whose arm has no run (``load.not_run``)."""
    sections: List[Section] = []
    pairs: Dict[str, str] = {}
    spec = DEFAULT_BASELINE if baseline is None else baseline
    queued: List[str] = []  # planned jobs not run that ask for the baseline, where no arm is it
    # checked here, not left to stats.verdicts, so that the way out names this command's flag
    if not arms_matching(runs, spec):
        arms = "; ".join(dict.fromkeys(runs["arm"]))
        queued = [job for job in without_arm if _asks_for(job, as_filter(spec))]
        if baseline is not None or treatment is not None:  # asked for a comparison: no report without it
            which = "--baseline" if baseline is not None else "the default baseline"
            if queued:
                raise ValueError(f"{which} {describe(spec)!r} matches no arm that has run, and "
                                 f"{len(queued)} of the sweep's planned jobs that have not run ask for it: relaunch "
                                 "the sweep's command to run them, then report again")
            raise ValueError(f"{which} {describe(spec)!r} matches no arm; the arms: {arms}; name one of them "
                             "(or a filter such as 'mixer=shift gamma=1/12') with --baseline")
        table, why = None, f"no arm matches the default baseline ({describe(spec)})"
    else:
        try:
            table = verdicts(runs, treatment=treatment, baseline=baseline, metric=metric, margin=margin,
                             pair_by=pair_by, tolerance=tolerance, testbeds=beds)
        except ValueError as e:
            if baseline is not None or treatment is not None:
                raise
            table, why = None, str(e)
    if table is not None and len(table):
        pairs = dict(zip(table["treatment"], table["baseline"]))
        k = table.attrs["comparisons"]
        family = (f"{CORRECTED}-corrected over the {counted(k, 'comparison')} with enough data for a test"
                  if k else "no comparison has enough data for a test")
        sections += [
            ("h2", f"Verdicts: every arm against the baseline arm ({describe(spec)})"),
            ("p", f"{table.attrs['test']} tests of d = treatment − baseline ({metric}, points): equivalence within "
                  f"±{margin:g} (TOST) and any difference (two-sided), each at α = {ALPHA:g}; {family}. "
                  f"{CI} CIs are not adjusted. TOST at α = {ALPHA:g} is the {1 - 2 * ALPHA:.0%} CI lying within "
                  f"±{margin:g}, so an arm called equivalent can show a {CI} CI that crosses the margin. Only "
                  f"finished runs ({', '.join(USED_STATUSES)}) enter the tests."),
            ("table", verdict_table(table))]
        images = table["images_p_difference"].notna()
        if images.any():
            sections.append(("p", f"The seed tests hold the validation set fixed. Where every finished run of both "
                                  f"arms recorded its predictions ({PREDICTIONS_FILE}), the {IMAGES_AND_SEEDS} "
                                  f"columns count that set's own sampling noise as well: the same t test with the "
                                  f"variance a new draw of validation images would add (the spread over images of "
                                  f"the arms' per-image accuracy difference, ÷ the number of images) added to the "
                                  f"seed test's, {CORRECTED}-corrected over those comparisons. It is never narrower "
                                  f"than the seed test. A verdict claims a difference or an equivalence only where "
                                  f"both support it, and then gives this interval. An inconclusive verdict's seeds "
                                  f"count is for this test too: the part of the images' noise more seeds do not "
                                  f"remove (how much the arms' true per-image difference varies over images) stays. "
                                  f"That part is estimated through the seeds' own luck, so it carries a "
                                  f"{CONFIDENCE_TEXT} interval (the jackknife over seeds): no number of seeds is named "
                                  f"where even the interval's low end alone leaves under {POWER_TEXT} power, and a "
                                  f"count is named as a minimum (\"or none\") where only its high end does."))
        if table["permutation_p_difference"].notna().any():
            sections.append(("p", f"The {PERMUTATION} columns test the same seeds without the t tests' assumption that "
                                  f"their spread is normal, which fails where some seeds learn the task and others "
                                  f"stay at chance: the difference of the arms' means against its value under every "
                                  f"rearrangement of the seeds between the arms (swaps within pairs when paired; "
                                  f"{PERMUTATIONS:,} random ones where there are more), and equivalence by the same "
                                  f"test of the treatment moved by ∓{margin:g}, {CORRECTED}-corrected over the same "
                                  f"comparisons. A verdict whose claim this test does not support names the condition "
                                  f"the claim rests on. Few seeds cap it whatever their values: 3 and 3 seeds give "
                                  f"no two-sided p below {p_text(permutation_floor(3, 3))}."))
        if table["beats_raw_p"].notna().any():
            sections.append(("p", f"The '{BEATS_RAW}' columns ask another question than the means: how many of each "
                                  f"arm's finished seeds beat the testbed's better raw-pixel baseline by more than "
                                  f"±{margin:g}, that is, learned something pixels alone do not give, and Fisher's "
                                  f"exact test of the two counts, {CORRECTED}-corrected over the comparisons. Where "
                                  f"seeds either learn the task or stay near chance, that count summarises an arm "
                                  f"better than a mean of the two modes. The verdict is about the means; this test "
                                  f"does not change it."))
        if table["diverged_p"].notna().any():
            sections.append(("p", f"The '{DIVERGED_SEEDS}' columns count, where either arm diverged, each arm's "
                                  f"diverged seeds of those that trained to the end or diverged (a failed or "
                                  f"interrupted seed, a crash or a kill, tells nothing of the arm), and give "
                                  f"Fisher's exact test of the diverged against the finished seeds, {CORRECTED}-"
                                  f"corrected over the comparisons that have one. The tests of the means read "
                                  f"finished seeds only, so an arm that diverges more often is a finding they cannot "
                                  f"show; the verdict names it."))
        for _, row in table[~images & (table["images_why"] != "")].iterrows():
            sections.append(("p", f"{row['treatment']} vs {row['baseline']}: the seed test alone, with the validation "
                                  f"set held fixed: {row['images_why']}."))
        if table["verdict"].str.startswith(NO_HEADROOM).any():
            sections.append(("p", f"Where the {NO_HEADROOM}, the way on depends on why. Arms within the test-set "
                                  f"noise of 100 % need a harder task or more validation images. Arms no better than "
                                  f"raw pixels may be undertrained (a learning curve still rising at its last epoch: "
                                  f"raise train.epochs), or on a task the pixels already solve: the CPU presets' "
                                  f"testbeds (scale=cpu: data=digits_small; scale=cpu_relations: "
                                  f"data=relations_small) leave room between raw pixels and 100 % (README, "
                                  f"\"Sweeps\")."))
        for _, row in table.iterrows():
            if row["ceiling"] and not row["verdict"].startswith(NO_HEADROOM):
                sections.append(("p", f"{row['treatment']} vs {row['baseline']}: measured where "
                                      f"{row['ceiling']}."))
            if row["verdict"].startswith(INCONCLUSIVE):
                sections.append(("p", f"{row['treatment']} vs {row['baseline']}: {row['outcome']}."))
    elif table is not None and not table.attrs["no_baseline"]:
        sections.append(("p", f"{NO_COMPARISON}: only the baseline arm is present, nothing to compare it with."))
    if table is not None and table.attrs["no_baseline"]:
        sections.append(("p", f"{NO_COMPARISON} for {'; '.join(table.attrs['no_baseline'])}: no baseline arm "
                              f"({describe(spec)}) ran on their data."))
    if queued:  # the baseline is in the sweep's plan, not yet run: the way out is to run it (a trend may follow)
        sections += [("h2", "Verdicts"), ("p", f"{NO_COMPARISON} yet: the baseline arm ({describe(spec)}) has no run, "
                                               f"and {len(queued)} of the sweep's planned jobs that have not run ask "
                                               "for it (listed above). Relaunch the sweep's command to run them, then "
                                               "report again.")]
    factor = one_factor(runs)
    if factor is not None:
        result = trend(runs, factor, metric, margin, beds)
        knob = knob_of(factor)
        text = _trend_headroom_text(result, knob) if math.isfinite(result["slope"]) else ""
        text += (f"Least-squares slope of {metric} on {knob} over {result['runs']} finished runs at "
                 f"{result['levels']} levels: {result['slope']:+.3g} points per unit of {knob} [{CI} CI "
                 f"{result['ci_low']:+.3g}, {result['ci_high']:+.3g}], {p_equals(result['p'])}; from the lowest level "
                 f"swept to the highest, {result['slope'] * (result['high'] - result['low']):+.3g} points."
                 if math.isfinite(result["slope"]) else
                 f"Too few finished runs ({result['runs']}) or levels ({result['levels']}) for a trend over {knob}.")
        if math.isfinite(result["permutation_p"]):
            text += (f" The {PERMUTATION} test, which shuffles the levels over the runs and assumes no shape of the "
                     f"seeds' spread: {p_equals(result['permutation_p'])}.")
        if math.isfinite(result["images_p"]):
            text += (f" With the validation images' own noise counted too ({IMAGES_AND_SEEDS}: the variance over "
                     f"images of each image's slope, ÷ the number of images, added to the slope's): "
                     f"[{CI} CI {result['images_ci_low']:+.3g}, {result['images_ci_high']:+.3g}], "
                     f"{p_equals(result['images_p'])}.")
        elif result["images_why"]:
            text += f" The seeds alone, with the validation set held fixed: {result['images_why']}."
        text += _lack_of_fit_text(result)
        statuses = arm_statuses(runs, runs["arm"])
        unfinished = unfinished_text(list(statuses.values()), list(statuses))
        if unfinished:  # the fit reads finished seeds only: a level most of whose seeds diverged is its survivors
            text += f" Seeds that did not finish, in no fit: {unfinished}."
        sections += [("h2", f"{TREND_HEADING} {knob} (one-factor sweep)"), ("p", text)]
    elif table is None and not queued:
        arms = list(dict.fromkeys(runs["arm"]))
        if len(arms) < 2:
            text = (f"{NO_COMPARISON}: {why}, and the runs are one arm, with nothing to compare it with. A sweep "
                    "over a knob (mixer=shift,attn) gives arms.")
        else:
            shown = "; ".join(f"'{arm}'" for arm in arms[:6]) + (f"; and {len(arms) - 6} more" if len(arms) > 6 else "")
            text = f"{NO_COMPARISON}: {why}. To compare, name the baseline arm with --baseline, one of: {shown}."
        sections += [("h2", "Verdicts"), ("p", text)]
    return sections, pairs


def _asks_for(job: str, spec: Mapping[str, Any]) -> bool:
    """Whether a planned job (its overrides, space-separated) sets every key of an arm filter to its value. Read from
    the overrides as written: a job that picks its mixer through another group's defaults (``+swap_arm=attn``) is
    not seen to ask for ``mixer=attn``, and its jobs are only listed among those not run."""
    given = dict(item.lstrip("+").split("=", 1) for item in job.split() if "=" in item)
    given = {column_name(key): value for key, value in given.items()}
    return all(given.get(column_name(key)) == str(value) for key, value in spec.items())


def _trend_headroom_text(result: Dict[str, Any], knob: str) -> str:
    """What the trend's testbed allows, said before its numbers, as a verdict says it (``stats.trend``'s
    ``ceiling`` and ``headroom_unchecked``); "" where it can separate the levels."""
    if result["ceiling"]:
        return (f"The {NO_HEADROOM_OF_LEVELS}: {result['ceiling']}. A slope this testbed does not find says nothing of "
                f"{knob}, and one it finds is measured against that limit. ")
    if result["headroom_unchecked"]:
        return f"{HEADROOM_UNCHECKED.capitalize()}, {result['headroom_unchecked']}: report where the runs' data lies. "
    return ""


def _lack_of_fit_text(result: Dict[str, Any]) -> str:
    """Whether the arms' means sit on the trend's line: a slope can be settled by one collapsed level alone. The
    classical test pools the levels' spreads; a departure it finds is claimed only where the test with each level's
    own spread finds it too, and otherwise named with that condition."""
    p, unequal = result["lack_of_fit_p"], result.get("lack_of_fit_unequal_p", math.nan)
    if not math.isfinite(p):
        return ""
    test = f"lack-of-fit F test against one mean per level, {p_equals(p)}"
    own = (f"with each level's own spread (a Wald F test of the same line with HC3 variances), {p_equals(unequal)}"
           if math.isfinite(unequal) else "")
    if p < ALPHA and (not own or unequal < ALPHA):
        return (f" The arms' means depart from a straight line ({test}{'; ' + own if own else ''}): the slope "
                "summarises a response that is not linear over these levels; read it with the arms' means, not as a "
                "steady change per unit.")
    if p < ALPHA:
        return (f" The arms' means depart from a straight line if every level's seeds spread alike ({test}), which "
                f"they may not: {own}. Read the slope with the arms' means.")
    return (f" A straight line is not rejected by the arms' means ({test}{'; ' + own if own else ''}), which does "
            "not show that the response is linear.")


def conclusions(sections: Sequence[Section]) -> List[str]:
    """The conclusions among a report's verdict sections, one line each: every comparison's verdict, the trend of a
    one-factor sweep, or why no comparison was made."""
    lines, heading = [], ""
    for kind, content in sections:
        if kind == "h2":
            heading = content
        elif kind == "table" and "verdict" in content:
            lines += [f"{row['treatment']} vs {row['baseline']}: {row['verdict']}" for _, row in content.iterrows()]
        elif kind == "p" and (heading.startswith(TREND_HEADING) or content.startswith(NO_COMPARISON)):
            lines.append(f"{heading}: {content}" if heading.startswith(TREND_HEADING) else content)
    return lines


def build(sweep_dirs: Iterable[Path], out: Path, baseline: Optional[ArmSpec] = None,
          treatment: Optional[ArmSpec] = None, margin: float = DEFAULT_MARGIN, metric: str = DEFAULT_METRIC,
          pair_by: Optional[str] = None, tolerance: Optional[float] = None,
          echo: Optional[Callable[[str], Any]] = None) -> Tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` (and the figures) into ``out``; returns their paths. ``echo``: given
    the report's conclusions (each comparison's verdict, or the trend, or why there is none), one line each."""
    sweep_dirs = [Path(s) for s in sweep_dirs]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedRun)  # listed in the report instead
        warnings.simplefilter("ignore", RepeatedSeed)
        runs = load_runs(sweep_dirs)
        curves = load_curves(sweep_dirs, runs=runs) if not runs.empty else None
    skipped = runs.attrs.get("skipped", [])
    counts = runs["status"].value_counts().to_dict() if not runs.empty else {}
    by_status = ", ".join(f"{counts[s]} {s}" for s in SEED_STATUS_ORDER if s in counts)
    arms = runs["arm"].nunique() if len(runs) else 0
    sections: List[Section] = [
        ("h1", "shiftvit report"),
        ("p", f"Sources: {', '.join(str(s) for s in sweep_dirs)}. {counted(len(runs), 'run')} loaded"
              f"{f' ({by_status})' if by_status else ''} in {counted(arms, 'arm')}; "
              f"{counted(len(skipped), 'record')} skipped (listed at the end).")]
    unstarted, without_arm = not_run(sweep_dirs, runs)
    if unstarted or without_arm:
        sections.append(("p", not_run_paragraph(unstarted, without_arm)))
    if UNREADABLE_REASON in runs:
        sections.append(("p", unreadable_paragraph(runs)))
    if not runs.empty and (runs["status"] == RUNNING).any():
        sections.append(("p", running_paragraph(runs)))
    for paragraph in (code_paragraph(runs), machine_paragraph(runs)):
        if paragraph:
            sections.append(("p", paragraph))
    for arm, seed, run_dirs in runs.attrs.get("repeated_seeds", []):
        sections.append(("p", f"{arm}: seed {seed} finished {len(run_dirs)} times ({', '.join(run_dirs)}): one "
                              "replicate, its values averaged in every mean and test."))
    if runs.empty:
        said = ["No finished runs found: nothing to analyse."]
        sections.append(("p", said[0]))
    else:
        head, beds = _testbed_sections(runs, metric)
        verdict_part, pairs = _verdict_sections(runs, metric, margin, baseline, treatment, pair_by, tolerance, beds,
                                                without_arm)
        sections += head + [
            ("h2", f"Arms: {metric} per configuration"),
            ("p", f"An arm is one configuration: runs differ only in their seed ({_arm_knobs(runs)}). Mean and "
                  f"{CI} t-interval over the finished seeds; seed SD next to the binomial SE of one run's accuracy on "
                  "the validation set. Diverged, failed, interrupted and unreadable runs are counted and never enter "
                  "a mean or a test. Budgets are flagged when they differ from the baseline arm's by more than the "
                  "tolerance."),
            ("table", arms_table(runs, metric, pairs, tolerance, unstarted))] + verdict_part
        said = conclusions(verdict_part)
        problems = curves.attrs.get("curve_problems", []) if curves is not None else []
        sections += [("h2", "Curves"),
                     ("p", f"{counted(len(problems), 'run')} with unreadable or truncated "
                           f"curves ({METRICS_FILE}); their readable epochs are kept." if problems else
                           f"Every run's curves ({METRICS_FILE}) read whole.")]
        if problems:
            sections.append(("table", pd.DataFrame(problems, columns=["run_dir", "problem"])))
        from .plots import build_figures, save_figures  # matplotlib only once there is something to draw

        figures = save_figures(build_figures(runs, curves, beds, metric), out)
        sections.append(("h2", "Figures"))
        sections += [("figure", paths[0]) for paths in figures.values()]
        columns = [c for c in run_columns(metric) if c in runs
                   and not (c == "sweep" and runs["sweep"].nunique() == 1)]
        shown = runs[columns].copy()
        for column in (metric, f"{metric}_se"):
            if column in shown:
                shown[column] = shown[column].map(lambda v: _points(float(v)) if pd.notna(v) else "")
        for column in ("macs", "params"):
            shown[column] = shown[column].map(lambda v: _millions(float(v)) if pd.notna(v) else "")
        if "train_images_per_s" in shown:
            shown["train_images_per_s"] = shown["train_images_per_s"].map(lambda v: f"{v:.0f}" if pd.notna(v) else "")
        sections += [("h2", "Runs loaded"), ("table", shown)]
    sections.append(("h2", "Runs skipped"))
    sections.append(("table", pd.DataFrame(skipped, columns=["run_dir", "reason"])) if skipped
                    else ("p", "None."))
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text(_markdown(sections, out))
    html_path.write_text(_html(sections))
    for line in said if echo is not None else ():  # once the report holds their evidence
        echo(line)
    return md_path, html_path


def _markdown(sections: List[Section], out: Path) -> str:
    lines = []
    for kind, value in sections:
        if kind == "h1":
            lines.append(f"# {value}\n")
        elif kind == "h2":
            lines.append(f"## {value}\n")
        elif kind == "p":
            lines.append(f"{value}\n")
        elif kind == "table":
            lines.append(markdown_table(value) + "\n")
        elif kind == "figure":
            lines.append(f"![{Path(value).stem}]({Path(value).relative_to(out)})\n")
    return "\n".join(lines)


def markdown_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "(empty)"
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "---|" * len(df.columns)
    body = ["| " + " | ".join("" if pd.isna(v) else str(v).replace("|", "\\|") for v in row) + " |"
            for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def _html(sections: List[Section]) -> str:
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


def _writable(out: Path) -> Optional[str]:
    """None when a report can be written into ``out``, else why not."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return e.strerror or str(e)
    return None if os.access(out, os.W_OK | os.X_OK) else "Permission denied"


def _holds_no_runs(path: Path) -> Optional[str]:
    """None when ``path`` holds at least one run record (a sweep whose runs all failed still has something to
    report), else what is wrong with it."""
    if not path.exists():
        return "does not exist"
    if not path.is_dir():
        return "is a file, not a directory"
    return None if find_run_dirs(path) else "holds no run records"


def _bad_argument(args: argparse.Namespace) -> Optional[str]:
    """None when the command line can make a report, else the one-line error naming the bad value and the way out."""
    if args.metric not in METRICS:
        return f"--metric {args.metric!r} is not a metric the analysis knows; use one of: {', '.join(METRICS)}"
    try:
        check_margin(args.margin, "--margin ")
    except ValueError as e:
        return str(e)
    if args.tolerance is not None:
        try:
            check_tolerance(args.tolerance, "--tolerance")
        except ConfigError as e:
            return str(e)
    for sweep in args.sweeps:
        problem = _holds_no_runs(sweep)
        if problem:
            return (f"{sweep} {problem}: name a run or sweep directory holding run records (a run's "
                    f"{SUMMARY_FILE} and {CONFIG_FILE}, as run.py writes them), e.g. {SWEEPS_DIR}/<sweep>")
    return None


def default_out(sweeps: Iterable[Any]) -> Path:
    """Where a report on ``sweeps`` goes unless told: beside the first sweep's runs. The notebooks put their
    figures under it too, so that everything read off a sweep stays with that sweep."""
    return Path(next(iter(sweeps))) / "report"


def main(argv: Optional[Iterable[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweeps", nargs="+", type=Path, help="sweep or run directories (e.g. multirun/<sweep>)")
    p.add_argument("--out", type=Path, default=None, help="output directory (default: <first sweep>/report)")
    p.add_argument("--baseline", default=None,
                   help="the arm every other is compared with: a mixer name, an arm label or key=value filters "
                        "('mixer=shift gamma=1/12'); default: the attn arm where there is one")
    p.add_argument("--treatment", default=None, help="compare only the arms this matches (same forms)")
    p.add_argument("--margin", type=float, default=DEFAULT_MARGIN, help="equivalence margin, top-1 points")
    p.add_argument("--metric", default=DEFAULT_METRIC)
    p.add_argument("--pair-by", choices=["seed"], default=None,
                   help="pair runs by seed (complete pairs only) instead of Welch's unpaired test")
    p.add_argument("--tolerance", type=float, default=None,
                   help="relative budget tolerance (default: the runs' recorded one, else the project default)")
    args = p.parse_args(argv)
    # every argument is checked before the output folder is made: a refused command leaves nothing behind
    why = _bad_argument(args)
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 2
    out = args.out or default_out(args.sweeps)
    why = _writable(out)
    if why:
        print(f"error: cannot write the report to {out} ({why}); choose a writable directory with --out DIR",
              file=sys.stderr)
        return 2
    try:
        md, page = build(args.sweeps, out, args.baseline, args.treatment, args.margin, args.metric, args.pair_by,
                         args.tolerance, echo=print)  # the conclusions on the terminal, the evidence in the files
    except ValueError as e:  # a baseline/treatment that names no arm, or several
        print(f"error: {e}", file=sys.stderr)
        return 2
    except PermissionError as e:
        print(f"error: cannot write the report to {out} ({e.strerror}); choose a writable directory with --out DIR",
              file=sys.stderr)
        return 2
    print(f"wrote {md}\nwrote {page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
