"""Arms, statistics, headroom and figures on constructed run records (real files, real pandas/statsmodels)."""
import itertools
import json
import math
import re
import shutil
import zipfile
from fractions import Fraction

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import yaml
from analysis_records import DIGITS, RELATIONS, testbed_cache, write_arm, write_run  # noqa: F401
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.lines import Line2D
from scipy import stats as st
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW, ttost_ind, ttost_paired

from analysis import headroom_of, load_curves, load_runs, select_arm, summarize, verdicts
from analysis.headroom import _cache_path
from analysis.plots import (
    MIXER_BARS_LABEL,
    NEUTRAL_SWATCH,
    PARETO_LABEL,
    build_figures,
    figure_breakdown,
    legend_entries,
    mixer_color,
)
from analysis.report import arms_table, build
from analysis.report import main as report_main
from analysis.stats import (
    ALPHA,
    INSUFFICIENT,
    NO_HEADROOM,
    PERMUTATIONS,
    WELCH_TEST,
    _seeds_range,
    images_and_seeds_test,
    one_factor,
    p_equals,
    p_text,
    permutation_seeds,
    permutation_tests,
)

pytestmark = pytest.mark.usefixtures("testbed_cache")
SHIFT = [91.0, 92.5, 90.5, 92.0]
ATTN = [90.0, 91.5, 91.0, 90.5]


@pytest.fixture
def two_sweeps(tmp_path):
    """Sweep A: shift at γ 1/12 and 1/6, shift 1/12 at another lr, attn. Sweep B: shift 1/12 (same config).
    Only the run records' numbers are chosen; attn runs faster (more images/s) and is less accurate."""
    a, b = tmp_path / "A", tmp_path / "B"
    write_arm(a, "s12", [90.0, 91.0, 92.0], gamma="1/12")
    write_arm(a, "s6", [80.0, 81.0, 82.0], gamma="1/6")
    write_arm(a, "s12lr", [70.0, 71.0], gamma="1/12", lr=0.001)
    write_arm(a, "attn", [60.0, 61.0, 62.0], mixer="attn", speed=1500.0)  # faster, less accurate: a Pareto front
    write_arm(b, "s12", [93.0, 94.0], first_seed=3, gamma="1/12")
    return a, b


def test_arms_never_pool_runs_with_different_configs(two_sweeps):
    runs = load_runs(list(two_sweeps), warn=False)
    assert runs.attrs["arm_columns"] == ["mixer", "gamma", "lr"]
    table = summarize(runs).set_index("arm")
    expected = {"mixer=shift gamma=1/12 lr=0.002": [90.0, 91.0, 92.0, 93.0, 94.0],  # equal configs: one arm
                "mixer=shift gamma=1/6 lr=0.002": [80.0, 81.0, 82.0],
                "mixer=shift gamma=1/12 lr=0.001": [70.0, 71.0],
                "mixer=attn lr=0.002": [60.0, 61.0, 62.0]}
    assert set(table.index) == set(expected)
    for arm, values in expected.items():
        assert table.loc[arm, "n"] == len(values)
        assert table.loc[arm, "mean"] == pytest.approx(np.mean(values))
        low, high = DescrStatsW(np.array(values)).tconfint_mean(0.05)
        assert (table.loc[arm, "ci_low"], table.loc[arm, "ci_high"]) == pytest.approx((low, high))
    assert set(runs.loc[runs["arm"] == "mixer=shift gamma=1/12 lr=0.002", "sweep"]) == {"A", "B"}


def test_arm_filters(two_sweeps):
    runs = load_runs(list(two_sweeps), warn=False)
    assert select_arm(runs, {"mixer": "shift", "gamma": "1/6"}) == "mixer=shift gamma=1/6 lr=0.002"
    assert select_arm(runs, {"mixer": "shift", "gamma": 1 / 12, "lr": 0.001}) == "mixer=shift gamma=1/12 lr=0.001"
    assert select_arm(runs, "attn") == "mixer=attn lr=0.002"
    with pytest.raises(ValueError, match="matches 3 arms"):
        select_arm(runs, "shift")
    with pytest.raises(ValueError, match="no arm matches mixer=mlp"):
        select_arm(runs, "mlp")
    table = verdicts(runs, treatment={"mixer": "shift", "lr": 0.002}, baseline="attn")
    assert sorted(table["treatment"]) == ["mixer=shift gamma=1/12 lr=0.002", "mixer=shift gamma=1/6 lr=0.002"]
    assert set(table["baseline"]) == {"mixer=attn lr=0.002"}


def test_welch_and_paired_agree_with_statsmodels_and_pair_only_complete_seeds(tmp_path):
    write_arm(tmp_path, "shift", SHIFT)
    for seed in (0, 1, 3):  # no attn run with seed 2
        write_run(tmp_path, f"attn-{seed}", mixer="attn", seed=seed, val_top1=ATTN[seed])
    runs = load_runs(tmp_path, warn=False)
    t, b = np.array(SHIFT), np.array([ATTN[0], ATTN[1], ATTN[3]])
    welch = verdicts(runs, margin=1.5).iloc[0]
    assert (welch["n_treatment"], welch["n_baseline"]) == (4, 3)
    assert welch["p_equivalence"] == pytest.approx(ttost_ind(t, b, -1.5, 1.5, usevar="unequal")[0])
    assert welch["p_difference"] == pytest.approx(st.ttest_ind(t, b, equal_var=False).pvalue)
    low, high = CompareMeans(DescrStatsW(t), DescrStatsW(b)).tconfint_diff(0.05, usevar="unequal")
    assert (welch["ci_low"], welch["ci_high"]) == pytest.approx((low, high))
    paired = verdicts(runs, margin=1.5, pair_by="seed").iloc[0]
    pairs_t, pairs_b = np.array([SHIFT[0], SHIFT[1], SHIFT[3]]), b  # seed 2 has no attn run: left out
    assert (paired["n_treatment"], paired["n_baseline"]) == (3, 3)
    assert paired["p_equivalence"] == pytest.approx(ttost_paired(pairs_t, pairs_b, -1.5, 1.5)[0])
    assert paired["p_difference"] == pytest.approx(st.ttest_rel(pairs_t, pairs_b).pvalue)
    for row in (welch, paired):  # one comparison: Holm changes nothing
        assert row["p_equivalence_adj"] == pytest.approx(row["p_equivalence"])
        assert row["p_difference_adj"] == pytest.approx(row["p_difference"])


@pytest.mark.parametrize("shift, attn, pair_by", [
    ([91.0], [90.0, 90.5, 91.0], None),                   # n = 1
    ([91.0, 91.0, 91.0], [90.0, 90.0, 90.0], None),       # no variance at all
    ([91.0, 91.0, 91.0], [90.0, 90.0, 90.0], "seed"),     # identical differences
], ids=["n1", "zero-variance", "paired-zero-variance"])
def test_degenerate_inputs_are_insufficient_never_equivalent(tmp_path, shift, attn, pair_by):
    write_arm(tmp_path, "shift", shift)
    write_arm(tmp_path, "attn", attn, mixer="attn")
    row = verdicts(load_runs(tmp_path, warn=False), pair_by=pair_by).iloc[0]
    assert row["verdict"] == row["outcome"] and row["verdict"].startswith(INSUFFICIENT) and \
        math.isnan(row["p_equivalence"])
    assert "add seeds to the sweep (seed=0,1,2)" in row["verdict"]  # each case names its way out


@pytest.mark.parametrize("pair_by", [None, "seed"])
def test_an_arm_short_of_seeds_because_they_diverged_is_not_told_to_add_seeds(tmp_path, pair_by):
    """More seeds of a recipe that diverged would diverge as often: the way out an arm whose seeds all diverged gets
    is a recipe both arms finish, with its count; an arm merely short of seeds is still told to add them."""
    for seed in (0, 1, 2):
        write_run(tmp_path, f"shift-{seed}", seed=seed, val_top1=None, status="diverged")
    write_arm(tmp_path, "attn", [80.0, 81.0, 80.5], mixer="attn")
    [row] = verdicts(load_runs(tmp_path, warn=False), pair_by=pair_by).to_dict("records")
    assert row["verdict"].startswith(INSUFFICIENT) and "add seeds" not in row["verdict"]
    assert "shift: 3 of 3 seeds diverged; more seeds of a recipe that diverges may diverge as well: for a test of " \
        "the means, train both arms on a recipe they finish (a lower train.lr, train.clip_grad)" in row["verdict"]
    shutil.rmtree(tmp_path)
    write_run(tmp_path, "shift-0", seed=0, val_top1=91.0)  # one seed, none diverged: too few seeds, nothing more
    write_run(tmp_path, "shift-1", seed=1, val_top1=None, status="failed")  # a crash says nothing of the recipe
    write_arm(tmp_path, "attn", [80.0, 81.0, 80.5], mixer="attn")
    [row] = verdicts(load_runs(tmp_path, warn=False), pair_by=pair_by).to_dict("records")
    assert "add seeds to the sweep (seed=0,1,2)" in row["verdict"] and "recipe they finish" not in row["verdict"]


def test_pairs_missing_because_seeds_diverged_are_not_a_reason_to_add_seeds(tmp_path):
    """Paired by seed, each arm finished 2 seeds, but never the same 2: the seeds the other arm finished diverged."""
    write_arm(tmp_path, "shift", [91.0, 92.0])
    write_arm(tmp_path, "attn", [90.0, 90.5], mixer="attn", first_seed=2)
    for seed in (2, 3):
        write_run(tmp_path, f"shift-{seed}", seed=seed, val_top1=None, status="diverged")
    for seed in (0, 1):
        write_run(tmp_path, f"attn-{seed}", mixer="attn", seed=seed, val_top1=None, status="diverged")
    [row] = verdicts(load_runs(tmp_path, warn=False), pair_by="seed").to_dict("records")
    assert row["outcome"].startswith(f"{INSUFFICIENT} (0 complete pairs, a paired test needs 2 or more: shift: 2 of 4 "
                                     "seeds diverged; attention: 2 of 4 seeds diverged; more seeds of a recipe")


def test_differences_equal_but_for_float_rounding_have_no_variance(tmp_path):
    """Each seed exactly one image better (of 360): 100/360 points, which float subtraction returns as
    0.2777...857 and 0.2777...715. That is no variance, not a certain difference with SD 7e-15."""
    image = 100 / 360
    write_arm(tmp_path, "shift", [(k + 1) * image for k in (340, 345, 350)])
    write_arm(tmp_path, "attn", [k * image for k in (340, 345, 350)], mixer="attn")
    row = verdicts(load_runs(tmp_path, warn=False), pair_by="seed").iloc[0]
    assert row["verdict"] == row["outcome"] == f"{INSUFFICIENT} (3 complete pairs, no variance: add seeds to the " \
        "sweep (seed=0,1,2), whose spread the test needs)"


@pytest.mark.parametrize("pair_by", [None, "seed"])
def test_a_seed_run_twice_in_one_arm_is_one_replicate(tmp_path, pair_by):
    """Two sweeps of one configuration share an arm; their seed 0 is one replicate (averaged), never two."""
    from analysis.load import RepeatedSeed

    write_arm(tmp_path / "A", "shift", SHIFT[:3])
    write_arm(tmp_path / "A", "attn", ATTN[:3], mixer="attn")
    write_run(tmp_path / "B", "shift-0", seed=0, val_top1=95.0)  # a rerun of seed 0, in the treatment arm only
    with pytest.warns(RepeatedSeed, match=r"mixer=shift: seed 0 finished 2 times"):
        runs = load_runs([tmp_path / "A", tmp_path / "B"])
    row = verdicts(runs, pair_by=pair_by).iloc[0]
    shift = [(SHIFT[0] + 95.0) / 2, *SHIFT[1:3]]
    assert (row["n_treatment"], row["n_baseline"]) == (3, 3)
    expected = st.ttest_rel(shift, ATTN[:3]) if pair_by else st.ttest_ind(shift, ATTN[:3], equal_var=False)
    assert row["p_difference"] == pytest.approx(expected.pvalue)
    summary = summarize(runs).set_index("arm").loc["mixer=shift"]
    assert (summary["seeds"], summary["runs"], summary["n"]) == (3, 4, 3)
    assert summary["mean"] == pytest.approx(np.mean(shift)) and summary["failures"] == ""
    shown = arms_table(runs, "val_top1", {"mixer=shift": "mixer=attn"}, None).set_index("arm")
    assert shown.loc["mixer=shift", "finished"] == "3 of 3 (4 runs)" and shown.loc["mixer=attn", "finished"] == "3 of 3"
    # the figures too: the arm's mean in the trade-off plot and its curve are over seeds, not runs
    from analysis.plots import figure_curves, figure_tradeoff

    tradeoff = figure_tradeoff(runs, "macs")
    [point] = [c for c in tradeoff.axes[0].collections if c.get_label() == "mixer=shift"]
    curve = next(line for line in figure_curves(load_curves([tmp_path / "A", tmp_path / "B"], warn=False, runs=runs),
                                                runs).axes[0].lines if line.get_label() == "mixer=shift")
    assert point.get_offsets()[0][1] == pytest.approx(np.mean(shift)) == curve.get_ydata()[0]
    plt.close("all")


def test_a_seed_that_diverged_once_and_finished_once_is_a_finished_seed(tmp_path):
    """A diverged run is a finding and is loaded beside a rerun of its seed that finished (failed and interrupted
    attempts are superseded, load.py): the seed is counted once, as finished."""
    write_arm(tmp_path / "A", "shift", [91.0, 92.0])
    write_run(tmp_path / "A", "shift-2", seed=2, val_top1=None, status="diverged")
    write_run(tmp_path / "B", "shift-2", seed=2, val_top1=93.0)  # a rerun that finished
    write_run(tmp_path / "B", "shift-3", seed=3, val_top1=None, status="diverged")
    write_run(tmp_path / "C", "shift-3", seed=3, val_top1=None, status="interrupted")
    summary = summarize(load_runs([tmp_path / "A", tmp_path / "B", tmp_path / "C"], warn=False)).iloc[0]
    assert (summary["seeds"], summary["runs"], summary["n"]) == (4, 5, 3)
    assert summary["failures"] == "1 of 4 seeds diverged"


def test_a_verdict_names_the_seeds_that_did_not_finish_and_tests_their_divergences(tmp_path):
    """The tests of the means read finished seeds only, so a claim holds of the seeds that finished, and the verdict
    says which did not, per arm. A divergence is the arm's own result: Fisher's exact test of the diverged against
    the finished seeds (a failed or interrupted seed tells nothing of the arm) says whether one arm diverges more
    often, even where no seed of it finished."""
    write_arm(tmp_path, "shift", [95.0, 96.0, 95.5])
    for seed in (3, 4):
        write_run(tmp_path, f"shift-{seed}", seed=seed, val_top1=None, status="diverged")
    write_arm(tmp_path, "attn", [80.0, 81.0, 80.5, 79.5], mixer="attn")
    write_run(tmp_path, "attn-4", mixer="attn", seed=4, val_top1=None, status="interrupted")
    [row] = verdicts(load_runs(tmp_path, warn=False), margin=1.0).to_dict("records")
    assert row["verdict"].startswith("shift better by")
    p = st.fisher_exact([[2, 3], [0, 4]]).pvalue  # shift 2 of 5 diverged, attention 0 of its 4 that trained
    assert (row["diverged_treatment"], row["trained_treatment"], row["diverged_baseline"], row["trained_baseline"]) \
        == (2, 5, 0, 4)
    assert row["diverged_p"] == pytest.approx(p) and row["diverged_p_adj"] == pytest.approx(p) and p > 0.05
    assert row["verdict"].endswith(
        "; seeds that did not finish, in no test of the means: shift: 2 of 5 seeds diverged; attention: 1 of 5 "
        f"seeds interrupted; divergence counts not shown to differ (Fisher {p_equals(p)}, Holm)")
    assert (row["n_treatment"], row["n_baseline"]) == (3, 4)
    assert (p_equals(0.0123), p_equals(0.0004)) == ("p = 0.012", "p < 0.001")  # as a sentence states a p-value

    for seed in (0, 1, 2):
        write_run(tmp_path, f"shift-{seed}", seed=seed, val_top1=None, status="diverged")
    [row] = verdicts(load_runs(tmp_path, warn=False), margin=1.0).to_dict("records")
    p = st.fisher_exact([[5, 0], [0, 4]]).pvalue
    assert p < 0.05
    assert row["verdict"].startswith("insufficient data") and row["verdict"].endswith(
        "; seeds that did not finish, in no test of the means: shift: 5 of 5 seeds diverged; attention: 1 of 5 "
        f"seeds interrupted; shift diverges more often than attention (0 of 4 seeds diverged; Fisher "
        f"{p_equals(p)}, Holm)")
    write_run(tmp_path, "attn-4", mixer="attn", seed=4, val_top1=79.0)  # every seed of one arm finished
    write_arm(tmp_path, "shift", [95.0, 96.0, 95.5, 94.0, 95.2])
    [row] = verdicts(load_runs(tmp_path, warn=False), margin=1.0).to_dict("records")
    assert "did not finish" not in row["verdict"] and math.isnan(row["diverged_p"])


def test_divergence_counts_are_corrected_over_the_comparisons_that_have_them(tmp_path):
    """Two arms diverge against one baseline: two Fisher tests, Holm-corrected together and apart from the tests of
    the means; an arm that only failed (a crash says nothing of the arm) adds no test. The report's verdict table
    shows the counts and the corrected p."""
    write_arm(tmp_path, "attn", [80.0, 81.0, 80.5, 79.5, 80.2, 80.1], mixer="attn")
    write_arm(tmp_path, "shift", [95.0, 96.0])
    for seed in range(2, 6):
        write_run(tmp_path, f"shift-{seed}", seed=seed, val_top1=None, status="diverged")
    write_arm(tmp_path, "pool", [85.0, 86.0, 85.5, 84.8, 85.1], mixer="pool")
    write_run(tmp_path, "pool-5", mixer="pool", seed=5, val_top1=None, status="diverged")
    write_arm(tmp_path, "mlp", [70.0, 71.0, 70.5, 70.2, 70.9], mixer="mlp")
    write_run(tmp_path, "mlp-5", mixer="mlp", seed=5, val_top1=None, status="failed")
    runs = load_runs(tmp_path, warn=False)
    table = verdicts(runs, margin=1.0).set_index("treatment")
    raw = [st.fisher_exact([[4, 2], [0, 6]]).pvalue, st.fisher_exact([[1, 5], [0, 6]]).pvalue]
    adjusted = multipletests(raw, method="holm")[1]
    assert table.loc["mixer=shift", "diverged_p"] == pytest.approx(raw[0])
    assert table.loc["mixer=shift", "diverged_p_adj"] == pytest.approx(adjusted[0])
    assert table.loc["mixer=pool", "diverged_p_adj"] == pytest.approx(adjusted[1])
    assert math.isnan(table.loc["mixer=mlp", "diverged_p"]) and table.loc["mixer=mlp", "trained_treatment"] == 5
    mlp = table.loc["mixer=mlp", "verdict"]
    assert "divergence" not in mlp and mlp.endswith("in no test of the means: token-MLP: 1 of 6 seeds failed")
    assert report_main([str(tmp_path), "--out", str(tmp_path / "r"), "--margin", "1"]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    assert f"| 4 of 6 vs 0 of 6 | {p_text(adjusted[0])} |" in md and "Fisher's exact test of the diverged" in md


def test_one_process_runs_are_one_arm_with_records_from_before_world_size(tmp_path):
    """Records written before world_size was recorded ran on one process: one arm with the new one-process runs;
    two processes (another total batch) are another arm."""
    write_arm(tmp_path, "old", [91.0, 92.0])
    for name, seed, world_size in (("one-2", 2, 1), ("one-3", 3, 1), ("two-0", 0, 2)):
        run_dir = write_run(tmp_path, name, seed=seed, val_top1=80.0 + seed)
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        (run_dir / "config.yaml").write_text(yaml.safe_dump({**config, "world_size": world_size}, sort_keys=False))
    runs = load_runs(tmp_path, warn=False)
    arms = runs.groupby("arm")["job"].apply(sorted).to_dict()
    assert sorted(arms.values()) == [["old-0", "old-1", "one-2", "one-3"], ["two-0"]]


def test_a_trend_counts_a_seed_run_twice_once(tmp_path):
    """The same γ sweep read twice (two sweep folders of one configuration) is the same evidence: the trend's
    points are the arm-seed means, so its slope, interval and p-value do not change."""
    from analysis.stats import trend

    for sweep in ("A", "B"):
        for gamma, values in {"1/12": [60.0, 64.0], "1/6": [55.0, 59.0]}.items():
            write_arm(tmp_path / sweep, f"g{gamma.replace('/', '_')}", values, gamma=gamma)
    once = trend(load_runs(tmp_path / "A", warn=False), "gamma_float")
    twice = trend(load_runs([tmp_path / "A", tmp_path / "B"], warn=False), "gamma_float")
    assert once["runs"] == twice["runs"] == 4 and once["p"] > 0.05
    for key in ("slope", "ci_low", "ci_high", "p"):
        assert twice[key] == pytest.approx(once[key]), key


def test_a_trend_names_the_seeds_that_did_not_finish(tmp_path):
    """The fit reads finished seeds only, so the report names the seeds it left out, per level."""
    for gamma, values in {"1/12": [60.0, 64.0, 62.0], "1/6": [55.0, 59.0, 57.0], "1/4": [50.0]}.items():
        write_arm(tmp_path, f"g{gamma.replace('/', '_')}", values, gamma=gamma)
    for seed in (1, 2):
        write_run(tmp_path, f"g1_4-{seed}", seed=seed, gamma="1/4", val_top1=None, status="diverged")
    assert report_main([str(tmp_path), "--out", str(tmp_path / "r")]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    assert "## Trend over gamma" in md and "over 7 finished runs at 3 levels" in md
    assert "Seeds that did not finish, in no fit: mixer=shift gamma=1/4: 2 of 3 seeds diverged." in md


def test_an_arm_without_a_baseline_on_its_data_is_not_compared_across_data(tmp_path, capsys):
    write_arm(tmp_path, "shift-relations", [80.0, 81.0, 82.0], data=RELATIONS)
    write_arm(tmp_path, "shift-digits", [97.0, 97.5, 98.0], data=DIGITS)
    write_arm(tmp_path, "attn-digits", [96.0, 96.5, 97.0], data=DIGITS, mixer="attn")
    table = verdicts(load_runs(tmp_path, warn=False))
    assert list(zip(table["treatment"], table["baseline"])) == [("mixer=shift data=digits", "mixer=attn data=digits")]
    assert table.attrs["no_baseline"] == ["mixer=shift data=relations"]
    report_main([str(tmp_path), "--out", str(tmp_path / "report")])
    said = "No comparison for mixer=shift data=relations: no baseline arm (mixer=attn) ran on their data."
    assert said in (tmp_path / "report" / "report.md").read_text()
    assert said in capsys.readouterr().out.splitlines()  # a conclusion the command prints too


def test_a_queued_baseline_is_said_only_where_no_arm_is_the_baseline(tmp_path):
    """Two attn arms equally near the shift arm: no comparison, for that tie, whose way out is --baseline; a planned
    attn job that has not run changes nothing of that."""
    from analysis.report import _verdict_sections

    write_arm(tmp_path, "shift", [91.0, 92.0])
    write_arm(tmp_path, "attn-lr", [90.0, 90.5], mixer="attn", lr=0.001)
    write_arm(tmp_path, "attn-epochs", [90.0, 90.5], mixer="attn", epochs=2)
    runs = load_runs(tmp_path, warn=False)
    sections, _ = _verdict_sections(runs, "val_top1", 1.0, None, None, None, None, {},
                                    without_arm=["mixer=attn train.lr=0.003 seed=0"])
    text = " ".join(str(content) for kind, content in sections if kind == "p")
    assert "No comparison:" in text and "--baseline" in text and "No comparison yet" not in text
    # named on the command line, a baseline that is only planned gets the same way out, as the command's error
    with pytest.raises(ValueError, match=r"^--baseline 'mixer=pool' matches no arm that has run, and 1 of the "
                                         r"sweep's planned jobs that have not run ask for it: relaunch the sweep's "
                                         r"command to run them, then report again$"):
        _verdict_sections(runs, "val_top1", 1.0, "pool", None, None, None, {}, without_arm=["mixer=pool seed=0"])


def test_a_finished_run_without_the_metric_is_counted_not_dropped(tmp_path):
    write_arm(tmp_path, "shift", [91.0, 92.0, 93.0])
    write_run(tmp_path, "shift-3", seed=3, val_top1=None)
    summary = summarize(load_runs(tmp_path, warn=False)).iloc[0]
    assert (summary["runs"], summary["n"]) == (4, 3)
    assert summary["failures"] == "1 of 4 seeds recorded no val_top1"


def test_paired_with_a_missing_seed_counts_complete_pairs_only(tmp_path):
    write_arm(tmp_path, "shift", [91.0, 92.0])
    write_run(tmp_path, "attn-1", mixer="attn", seed=1, val_top1=90.0)
    write_run(tmp_path, "attn-5", mixer="attn", seed=5, val_top1=90.5)
    row = verdicts(load_runs(tmp_path, warn=False), pair_by="seed").iloc[0]
    assert row["outcome"] == (f"{INSUFFICIENT} (1 complete pairs, a paired test needs 2 or more: add seeds to the "
                              "sweep (seed=0,1,2) in both arms)")
    assert row["verdict"] == row["outcome"] + "; finished seeds without a pair, in no paired test: shift: seed 0; " \
                                              "attention: seed 5"


def test_equivalent_yet_different(tmp_path):
    write_arm(tmp_path, "shift", [90.90, 90.92, 90.88, 90.91, 90.89])
    write_arm(tmp_path, "attn", [90.0, 90.01, 89.99, 90.0, 90.0], mixer="attn")
    row = verdicts(load_runs(tmp_path, warn=False)).iloc[0]
    assert row["p_difference"] < 0.001 and row["p_equivalence"] < 0.05
    assert row["verdict"].startswith("equivalent within ±1, yet different (shift better by 0.90 [")


def test_clear_difference_and_inconclusive_with_a_seeds_range(tmp_path):
    write_arm(tmp_path / "a", "shift", [93.0, 92.5, 93.4, 92.8])
    write_arm(tmp_path / "a", "attn", [90.0, 90.5, 89.6, 90.2], mixer="attn")
    assert verdicts(load_runs(tmp_path / "a", warn=False)).iloc[0]["verdict"].startswith("shift better by 2.85 [")
    write_arm(tmp_path / "b", "shift", [92.0, 88.5, 90.8])
    write_arm(tmp_path / "b", "attn", [90.0, 91.5, 88.6], mixer="attn")
    row = verdicts(load_runs(tmp_path / "b", warn=False)).iloc[0]
    low, high = row["seeds_low"], row["seeds_high"]
    assert low is not None and high is not None and 3 < low < high
    assert row["verdict"] == f"inconclusive: about {low}–{high} seeds per arm would settle it (80 % power)"


def test_the_seeds_advice_holds_at_the_corrected_level(tmp_path):
    """Ten comparisons: the advice is for α/10, Holm's strictest step, not for an uncorrected 0.05 (which would
    ask for about as many seeds as the arm already has)."""
    base = np.array([90.0, 90.6, 89.4, 90.3, 89.7, 90.0])
    noise = base - base.mean()
    write_arm(tmp_path, "attn", list(base), mixer="attn")
    write_arm(tmp_path, "strong", list(base.mean() + 0.85 + noise[::-1] * 1.1), lr=0.003)
    for i in range(9):
        write_arm(tmp_path, f"null{i}", list(base.mean() + np.roll(noise, i + 1)), lr=0.004 + i / 1000)
    table = verdicts(load_runs(tmp_path, warn=False), margin=0.5).set_index("treatment")
    row = table.loc[[arm for arm in table.index if "0.003" in arm][0]]
    assert table.attrs["comparisons"] == 10 and row["p_difference"] < ALPHA < row["p_difference_adj"]
    sd = math.sqrt((np.var(base, ddof=1) + np.var(noise * 1.1, ddof=1)) / 2)
    corrected, uncorrected = (TTestIndPower().solve_power(row["diff"] / sd, alpha=a, power=0.8)
                              for a in (ALPHA / 10, ALPHA))
    assert uncorrected < 6 < corrected  # the uncorrected advice would be "fewer seeds than you ran"
    assert row["seeds_low"] <= math.ceil(corrected) <= row["seeds_high"]
    assert (row["seeds_low"], row["seeds_high"]) == _seeds_range(row["diff"], sd, 10, 0.5, False, ALPHA / 10)
    assert (row["seeds_low"], row["seeds_high"]) != _seeds_range(row["diff"], sd, 10, 0.5, False, ALPHA)
    # (the arms differ in lr too, which the verdict names after its advice)
    assert row["verdict"].endswith("seeds per arm would settle it (80 % power at the corrected α = 0.005); the arms "
                                   "also differ in their recipe (lr 0.003 vs 0.002): the difference is theirs together")


def test_a_difference_on_a_testbed_without_headroom_claims_no_equivalence(tmp_path):
    write_arm(tmp_path, "shift", [98.50, 98.52, 98.48, 98.51], data=DIGITS)
    write_arm(tmp_path, "attn", [98.00, 98.01, 97.99, 98.02], data=DIGITS, mixer="attn")
    row = verdicts(load_runs(tmp_path, warn=False)).iloc[0]
    assert row["p_equivalence_adj"] < ALPHA and row["p_difference_adj"] < ALPHA  # both tests reject
    assert re.fullmatch(r"shift better by 0\.50 \[0\.\d\d, 0\.\d\d\]; on a testbed where no arm beats raw-pixel "
                        r"1-NN \(98\.61 %\) by more than ±1", row["verdict"]), row["verdict"]


def test_seeds_above_the_raw_pixels_are_named_where_their_arms_mean_is_not(tmp_path):
    """Seeds that learn or stay at chance: two of shift's five seeds beat raw-pixel 1-NN by far, its mean does not.
    The verdict is still judged on the means ("cannot separate"), and says how many seeds beat the pixels."""
    bed = headroom_of(RELATIONS)
    best = bed.best_baseline[1]
    learned = [best + 20, 52.0, best + 15, 53.0, 51.0]
    assert np.mean(learned) < best
    write_arm(tmp_path, "shift", learned)
    write_arm(tmp_path, "attn", [50.0, 51.0, 52.0, 50.5, best + 1.5], mixer="attn")
    row = verdicts(load_runs(tmp_path, warn=False)).iloc[0]
    assert row["verdict"] == (f"{NO_HEADROOM}: no arm beats raw-pixel {bed.best_baseline[0]} ({best:.2f} %) by more "
                              "than ±1 (2 of 5 seeds of the treatment and 1 of 5 seeds of the baseline do)")
    # the report says the ways on: train longer, or a testbed with room above the pixels
    assert report_main([str(tmp_path), "--out", str(tmp_path / "r")]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    assert f"Where the {NO_HEADROOM}, the way on depends on why" in md and "raise train.epochs" in md


def test_an_accuracys_interval_stays_between_0_and_100(tmp_path):
    """The t-interval of 96.6, 88.0 and 99.5 (the shift arm on relations_small) is 79.8 to 109.6 unclipped."""
    write_arm(tmp_path, "shift", [96.6, 88.0, 99.5])
    write_arm(tmp_path, "attn", [67.8, 50.3, 51.9], mixer="attn")
    table = summarize(load_runs(tmp_path, warn=False)).set_index("arm")
    assert table.loc["mixer=shift", "ci_high"] == 100.0
    assert table.loc["mixer=shift", "ci_low"] == pytest.approx(79.84, abs=0.01)  # the lower end is untouched
    assert 0 < table.loc["mixer=attn", "ci_low"] < table.loc["mixer=attn", "ci_high"] < 100


def test_diverged_failed_and_interrupted_runs_are_counted_not_averaged(tmp_path):
    write_arm(tmp_path, "shift", [91.0, 92.0, 93.0])
    write_run(tmp_path, "shift-3", seed=3, val_top1=10.0, status="diverged")
    write_run(tmp_path, "shift-4", seed=4, val_top1=None, status="failed")
    write_run(tmp_path, "shift-5", seed=5, val_top1=50.0, status="running")  # its process is gone: interrupted
    write_arm(tmp_path, "attn", [90.0, 91.0, 91.5], mixer="attn")
    runs = load_runs(tmp_path, warn=False)
    assert runs.loc[runs["seed"] == 5, "status"].tolist() == ["interrupted"]
    row = summarize(runs).set_index("arm").loc["mixer=shift"]
    assert (row["runs"], row["n"], row["mean"]) == (6, 3, 92.0)
    assert row["failures"] == "1 of 6 seeds diverged; 1 of 6 seeds failed; 1 of 6 seeds interrupted"
    comparison = verdicts(runs).iloc[0]
    assert comparison["n_treatment"] == 3 and comparison["diff"] == pytest.approx(92.0 - np.mean([90, 91, 91.5]))
    shown = arms_table(runs, "val_top1", {"mixer=shift": "mixer=attn"}, None).set_index("arm")
    assert shown.loc["mixer=shift", "finished"] == "3 of 6" and shown.loc["mixer=shift", "failed"] == row["failures"]


def test_seeds_still_training_are_counted_and_named_before_the_verdict_not_dropped(tmp_path):
    """A report read while the sweep runs: the seeds still training (their process holds the record's lock) are
    seeds of their arm without a result yet, named in the arms table, before the numbers and in the verdict,
    where they were skipped as if the arm had run three seeds."""
    import fcntl

    from shiftvit.records import LOCK_FILE

    write_arm(tmp_path, "shift", [88.0, 89.0, 90.0])
    for seed in (3, 4):
        write_run(tmp_path, f"shift-{seed}", seed=seed, val_top1=None, status="running")
    write_arm(tmp_path, "attn", [84.0, 85.0, 84.5, 85.5, 84.0], mixer="attn")
    locks = [open(tmp_path / f"shift-{seed}" / LOCK_FILE, "w") for seed in (3, 4)]
    try:
        for lock in locks:
            fcntl.flock(lock, fcntl.LOCK_EX)
        runs = load_runs(tmp_path, warn=False)
        row = summarize(runs).set_index("arm").loc["mixer=shift"]
        assert (row["seeds"], row["n"], row["running"], row["failures"]) == (5, 3, 2, "")
        comparison = verdicts(runs).iloc[0]
        assert comparison["n_treatment"] == 3
        assert comparison["verdict"].endswith("; seeds that did not finish, in no test of the means: shift: 2 of 5 "
                                              "seeds running")
        # a run still training may be writing its last line: not a truncated curve
        metrics = tmp_path / "shift-3" / "metrics.jsonl"
        metrics.write_text(metrics.read_text() + '{"epoch": 2, "val_top1": 9')
        assert load_curves(tmp_path, warn=False, runs=runs).attrs["curve_problems"] == []
        assert report_main([str(tmp_path), "--out", str(tmp_path / "report")]) == 0
    finally:
        for lock in locks:
            lock.close()
    md = (tmp_path / "report" / "report.md").read_text()
    assert "(8 completed, 2 running)" in md and "| mixer=shift | 3 of 5, 2 running |" in md
    assert md.index("Running: 2 runs still training") < md.index("## Arms")
    # an equivalence is TOST's: the 90 % CI inside the margin, which the 95 % CI in the table may cross
    assert "TOST at α = 0.05 is the 90% CI lying within ±1, so an arm called equivalent can show a 95% CI" in md


def test_finished_seeds_that_recorded_no_value_are_named_in_the_verdict(tmp_path):
    """A completed run without the compared metric (ema_val_top1 with the EMA off, a value lost) cannot enter a
    test; the verdict, not only the arms table, says whose seeds they are."""
    write_arm(tmp_path, "shift", [60.0, 62.0, 61.0, 63.0, 59.0])
    write_arm(tmp_path, "attn", [50.0, 52.0, 51.0], mixer="attn")
    write_run(tmp_path, "attn-3", seed=3, val_top1=None, mixer="attn")
    write_run(tmp_path, "attn-4", seed=4, val_top1=float("nan"), mixer="attn")
    row = verdicts(load_runs(tmp_path, warn=False)).iloc[0]
    assert (row["n_treatment"], row["n_baseline"]) == (5, 3)
    assert row["verdict"].endswith("; finished seeds without a value, in no test: attention: 2 of 5 seeds recorded "
                                   "no val_top1")


def test_holm_turns_a_borderline_difference_inconclusive(tmp_path):
    baseline = [90.0, 90.6, 89.4, 90.3, 89.7]
    write_arm(tmp_path, "attn", baseline, mixer="attn")
    write_arm(tmp_path, "shift", [91.3, 91.9, 90.2, 91.8, 90.5])
    write_arm(tmp_path, "shift6", [90.1, 90.5, 89.5, 90.4, 89.6], gamma="1/6")   # no difference
    write_arm(tmp_path, "shift8", [89.9, 90.7, 89.3, 90.2, 89.9], gamma="1/8")   # no difference
    runs = load_runs(tmp_path, warn=False)
    borderline = "mixer=shift gamma=1/12"
    alone = verdicts(runs, treatment=borderline).iloc[0]
    assert 0.05 / 3 < alone["p_difference"] < 0.05  # the premise: significant alone, not after Holm over 3
    assert alone["verdict"].startswith("shift better by") or alone["verdict"].startswith(f"{borderline} better by")
    table = verdicts(runs).set_index("treatment")
    assert table.attrs["comparisons"] == 3
    holm = multipletests(table["p_difference"], method="holm")[1]
    assert table["p_difference_adj"].tolist() == pytest.approx(list(holm))
    assert table.loc[borderline, "verdict"].startswith("inconclusive")


def test_ceiling_verdict_on_digits(tmp_path):
    bed = headroom_of(DIGITS)
    assert (bed.val_images, bed.num_classes, bed.chance) == (360, 10, 10.0)
    assert bed.nearest_neighbour is not None and bed.nearest_neighbour > 95  # raw pixels already near the top
    write_arm(tmp_path, "shift", [98.6, 98.9, 99.2, 98.3], data=DIGITS)
    write_arm(tmp_path, "attn", [98.3, 98.9, 98.6, 99.2], data=DIGITS, mixer="attn")
    row = verdicts(load_runs(tmp_path, warn=False)).iloc[0]
    assert row["verdict"] == f"{NO_HEADROOM}: {row['ceiling']}" and "raw-pixel 1-NN" in row["ceiling"]
    assert "seeds" not in row["verdict"]


def test_testbed_is_cached_per_data_config(tmp_path):
    first = headroom_of(RELATIONS)
    path = _cache_path(RELATIONS)
    assert path.exists() and json.loads(path.read_text())["nearest_neighbour"] == first.nearest_neighbour
    path.write_text(json.dumps({**json.loads(path.read_text()), "nearest_neighbour": 12.5}))
    assert headroom_of(RELATIONS).nearest_neighbour == 12.5  # read back, not recomputed
    other = {**RELATIONS, "seed": 1}
    assert _cache_path(other) != path and headroom_of(other).nearest_neighbour != 12.5
    path.unlink()  # let later tests see the real value again


def test_budget_flag(tmp_path):
    write_arm(tmp_path, "shift", SHIFT)
    write_arm(tmp_path, "attn", ATTN, mixer="attn", macs=14_789_120)
    row = verdicts(load_runs(tmp_path, warn=False)).iloc[0]
    assert row["budget"] == "−47 % MACs" and not row["budget_matched"]
    assert row["verdict"] == "not budget-matched (−47 % MACs)"
    write_run(tmp_path, "attn-0", mixer="attn", seed=0, val_top1=ATTN[0], macs=7_950_000)  # +0.6 %: within 2 %
    for i, v in enumerate(ATTN[1:], 1):
        write_run(tmp_path, f"attn-{i}", mixer="attn", seed=i, val_top1=v, macs=7_950_000)
    row = verdicts(load_runs(tmp_path, warn=False)).iloc[0]
    assert row["budget_matched"] and not row["verdict"].startswith("not budget-matched")


def test_a_verdict_withheld_for_its_budget_keeps_what_the_arms_failed_to_finish(tmp_path):
    write_arm(tmp_path, "shift", SHIFT)
    write_run(tmp_path, "shift-4", seed=4, val_top1=10.0, status="diverged")
    write_arm(tmp_path, "attn", ATTN, mixer="attn", macs=14_789_120)
    row = verdicts(load_runs(tmp_path, warn=False)).iloc[0]
    assert row["verdict"] == ("not budget-matched (−47 % MACs); seeds that did not finish, in no test of the means: "
                              "shift: 1 of 5 seeds diverged; divergence counts not shown to differ (Fisher p = 1.000, "
                              "Holm)")


def test_a_paired_verdict_names_the_finished_seeds_it_left_without_a_pair(tmp_path):
    """Paired by seed, the test reads complete pairs only: finished seeds of one arm that the other lacks are left
    out, and could flip the result, so the verdict names them."""
    write_arm(tmp_path, "shift", [60.0, 62.0, 61.0, 70.0, 40.0])
    write_arm(tmp_path, "attn", [50.0, 53.0, 50.5], mixer="attn", first_seed=0)
    write_run(tmp_path, "attn-7", mixer="attn", seed=7, val_top1=52.0)
    row = verdicts(load_runs(tmp_path, warn=False), pair_by="seed").iloc[0]
    assert (row["n_treatment"], row["n_baseline"]) == (3, 3)
    assert row["unpaired"] == "shift: seeds 3, 4; attention: seed 7"
    assert row["verdict"].endswith("; finished seeds without a pair, in no paired test: shift: seeds 3, 4; "
                                   "attention: seed 7")
    assert verdicts(load_runs(tmp_path, warn=False)).iloc[0]["unpaired"] == ""  # unpaired tests read every seed


def test_a_verdict_on_a_testbed_that_cannot_be_built_here_says_its_headroom_went_unchecked(tmp_path):
    """Runs analysed away from their data (a cluster's records on a laptop): neither the ceiling nor the raw-pixel
    baselines can be checked, and an equivalence near 100 % must not read as a finding about the mixers."""
    mnist = {"name": "mnist", "root": str(tmp_path / "not_here")}
    write_arm(tmp_path / "sweep", "shift", [99.1, 99.2, 99.15, 99.25], data=mnist)
    write_arm(tmp_path / "sweep", "attn", [99.2, 99.1, 99.2, 99.15], mixer="attn", data=mnist)
    row = verdicts(load_runs(tmp_path / "sweep", warn=False), margin=0.5).iloc[0]
    assert row["verdict"].startswith("equivalent within ±0.5; testbed headroom not checked, dataset not available "
                                     "here (DataError: mnist: ")
    assert row["verdict"].endswith(": report where the runs' data lies") and str(tmp_path / "not_here") in \
        row["verdict"]


def test_arms_solved_to_the_same_budget_are_matched_even_a_little_over_the_tolerance_apart(tmp_path):
    """Each of two arms solved to one target is within the tolerance of it, so they may differ by up to twice
    the tolerance from each other (-1.9 % and +2 % on the CPU mixers grid) and still be the budget-matched
    comparison the ablation asks for; two unmatched arms that far apart are not."""
    write_arm(tmp_path / "matched", "shift", SHIFT, match="flops", macs=7_899_648)
    write_arm(tmp_path / "matched", "pool", ATTN, mixer="pool", match="flops", macs=7_899_648 * 1.03)
    row = verdicts(load_runs(tmp_path / "matched", warn=False), baseline={"mixer": "shift"}).iloc[0]
    assert row["budget_matched"] and row["budget"] == "+3.0 % MACs (same target)"
    assert not row["verdict"].startswith("not budget-matched")
    write_arm(tmp_path / "unmatched", "shift", SHIFT, macs=7_899_648)
    write_arm(tmp_path / "unmatched", "pool", ATTN, mixer="pool", macs=7_899_648 * 1.03)
    row = verdicts(load_runs(tmp_path / "unmatched", warn=False), baseline={"mixer": "shift"}).iloc[0]
    assert not row["budget_matched"] and row["verdict"] == "not budget-matched (+3.0 % MACs)"


def test_a_budget_just_over_the_tolerance_never_reads_as_within_it(tmp_path):
    write_arm(tmp_path, "shift", SHIFT, macs=7_899_648 * 1.024)
    write_arm(tmp_path, "attn", ATTN, mixer="attn", macs=7_899_648)
    row = verdicts(load_runs(tmp_path, warn=False)).iloc[0]
    assert row["verdict"] == "not budget-matched (+2.4 % MACs)"  # "+2 %" would read as within the 2 % tolerance


# --- figures ---------------------------------------------------------------------------------------------------
def _drawn(artist) -> bool:
    if isinstance(artist, Line2D):  # a point between NaNs, without a marker, draws nothing
        y = np.asarray(artist.get_ydata(), dtype=float)
        finite = np.isfinite(y)
        marked = artist.get_marker() not in (None, "None", "")
        return bool(finite.any() and (marked or (finite[1:] & finite[:-1]).any()))
    if isinstance(artist, PathCollection):
        return len(artist.get_offsets()) > 0
    if isinstance(artist, PolyCollection):
        return any(len(p.vertices) for p in artist.get_paths())
    if isinstance(artist, ErrorbarContainer):
        return len(artist.lines[0].get_xdata()) > 0
    if isinstance(artist, BarContainer):
        return any(bar.get_height() > 0 for bar in artist.patches)
    raise AssertionError(f"legend entry of an unexpected kind: {artist!r}")


def test_legends_name_only_what_is_drawn(two_sweeps):
    runs = load_runs(list(two_sweeps), warn=False)

    figures = build_figures(runs, load_curves(list(two_sweeps), warn=False, runs=runs))
    assert {"arms", "gamma", "acc_vs_macs", "acc_vs_speed", "curves_val_top1", "macs_breakdown"} <= set(figures)
    for name, fig in figures.items():
        fig.canvas.draw()
        for label, artist in legend_entries(fig):
            assert _drawn(artist), f"{name}: legend lists {label!r}, which is not drawn"
        for ax in fig.axes:
            assert ax.xaxis.get_offset_text().get_text() == "" and ax.yaxis.get_offset_text().get_text() == ""
    speed = dict(legend_entries(figures["acc_vs_speed"]))
    front = speed[PARETO_LABEL]  # attn fastest, shift 1/12 most accurate: both on the front
    assert len(set(zip(front.get_xdata(), front.get_ydata()))) >= 2
    assert "CI" in figures["arms"].axes[0].get_title()
    attn_points = [a for label, a in legend_entries(figures["acc_vs_macs"]) if label.startswith("mixer=attn")]
    assert attn_points and all(np.allclose(a.get_facecolor()[0][:3], _rgb(mixer_color("attn"))) for a in attn_points)
    assert figures["acc_vs_macs"].axes[0].get_xlabel() == "M MACs per image"
    for patch in figures["macs_breakdown"].axes[0].patches[len(set(runs["arm"])):]:  # MLP and the rest
        assert tuple(patch.get_facecolor()[:3]) == (1.0, 1.0, 1.0)  # never a mixer's colour
    # the mixer bars' legend swatch is neutral: matplotlib's own was the first arm's colour, shift's, whose bar
    # has no height (the shift costs no MACs), so the one colour the figure does not show
    runs.loc[runs["mixer"] == "attn", "macs_mixer"] = 3e6
    legend = figure_breakdown(runs).axes[0].get_legend()
    swatch, = [h for h, t in zip(legend.legend_handles, legend.get_texts()) if t.get_text() == MIXER_BARS_LABEL]
    assert tuple(swatch.get_facecolor()[:3]) == _rgb(NEUTRAL_SWATCH)
    plt.close("all")


def _rgb(hex_color: str):
    from matplotlib.colors import to_rgb

    return to_rgb(hex_color)


def test_no_pareto_front_or_ci_claimed_when_not_drawn(tmp_path):
    write_run(tmp_path, "shift-0", val_top1=91.0)
    write_run(tmp_path, "shift6-0", val_top1=90.0, gamma="1/6")  # same MACs and speed, lower: dominated
    figures = build_figures(load_runs(tmp_path, warn=False))
    labels = [label for label, _ in legend_entries(figures["acc_vs_macs"])]
    assert PARETO_LABEL not in labels and "Pareto" not in figures["acc_vs_macs"].axes[0].get_title()
    assert "no CI" in figures["arms"].axes[0].get_title()
    assert not [label for label, _ in legend_entries(figures["arms"]) if "CI" in label]
    plt.close("all")


def test_report_numbers_are_rounded(two_sweeps, tmp_path):
    assert report_main([str(p) for p in two_sweeps] + ["--out", str(tmp_path / "r")]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    assert not re.search(r"\d\.\d{5,}", md)
    assert "Holm-corrected over the 3 comparisons" in md


def _gamma_sweep_report(tmp_path, gammas) -> str:
    """A γ sweep with these seeds' top-1 per γ (one arm each), reported: the report's markdown."""
    for gamma, values in gammas.items():
        write_arm(tmp_path, f"g{gamma.replace('/', '_')}", values, gamma=gamma)
    assert report_main([str(tmp_path), "--out", str(tmp_path / "r")]) == 0
    return (tmp_path / "r" / "report.md").read_text()


def test_one_factor_sweep_reports_the_trend(tmp_path):
    import statsmodels.api as sm

    gammas = {"1/24": [88.0, 88.6], "1/12": [89.1, 89.9], "1/6": [90.2, 90.6]}
    md = _gamma_sweep_report(tmp_path, gammas)
    x = [1 / 24] * 2 + [1 / 12] * 2 + [1 / 6] * 2
    fit = sm.OLS([v for vs in gammas.values() for v in vs], sm.add_constant(x)).fit()
    assert "## Trend over gamma (one-factor sweep)" in md and "Verdicts" not in md
    # the label names the mixer, which every arm shares: it is not what the arms differ in
    assert "(arms differ in: gamma; every arm has mixer=shift)" in md
    assert f"over 6 finished runs at 3 levels: {fit.params[1]:+.3g} points per unit of gamma" in md
    assert f"from the lowest level swept to the highest, {fit.params[1] * (1 / 6 - 1 / 24):+.3g} points." in md
    assert "cannot separate" not in md  # these levels beat the raw pixels by far
    p = _lack_of_fit_p(x, [v for vs in gammas.values() for v in vs])
    assert p >= 0.05 and f"A straight line is not rejected by the arms' means (lack-of-fit F test against one " \
        f"mean per level, {p_equals(p)}; with each level's own spread" in md
    # the slope against every one of the 720 orders of the levels over the 6 runs
    y = np.array([v for vs in gammas.values() for v in vs])
    slopes = np.array([np.polyfit(order, y, 1)[0] for order in itertools.permutations(x)])
    tail = min(np.mean(slopes >= fit.params[1] - 1e-9), np.mean(slopes <= fit.params[1] + 1e-9))
    assert f"The permutation test, which shuffles the levels over the runs and assumes no shape of the seeds' " \
        f"spread: {p_equals(min(1.0, 2 * tail))}." in md


def test_a_trend_on_a_testbed_that_cannot_separate_its_levels_says_so_first(tmp_path):
    """A slope is a comparison of the levels: where no level beats the raw pixels by the margin, the trend says so
    before its numbers, as a verdict does (it was reported bare, while the verdict on the same runs said it)."""
    from analysis.stats import NO_HEADROOM_OF_LEVELS, trend

    best = headroom_of(RELATIONS).best_baseline
    gammas = {"1/12": [best[1] - 3.0, best[1] - 2.0], "1/6": [best[1] - 1.0, best[1] + 0.5]}
    md = _gamma_sweep_report(tmp_path, gammas)
    reason = f"no arm beats raw-pixel {best[0]} ({best[1]:.2f} %) by more than ±1"
    assert f"The {NO_HEADROOM_OF_LEVELS}: {reason}. A slope this testbed does not find says nothing of gamma" in md
    result = trend(load_runs(tmp_path, warn=False), "gamma_float")
    assert result["ceiling"] == reason and result["headroom_unchecked"] == ""
    # one level left with finished seeds: no slope, so nothing is said of one
    few = tmp_path / "few"
    write_arm(few, "g1_12", [best[1] - 3.0, best[1] - 2.0], gamma="1/12")
    for seed in (0, 1):
        write_run(few, f"g1_6-{seed}", seed=seed, gamma="1/6", val_top1=None, status="diverged")
    assert report_main([str(few), "--out", str(few / "r")]) == 0
    md = (few / "r" / "report.md").read_text()
    assert "for a trend over gamma" in md and NO_HEADROOM_OF_LEVELS not in md


def _lack_of_fit_p(x, y) -> float:
    """statsmodels' own comparison of the line with one mean per level (anova_lm of the two formula fits)."""
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    data = pd.DataFrame({"x": x, "y": y})
    return float(anova_lm(smf.ols("y ~ x", data).fit(), smf.ols("y ~ C(x)", data).fit())["Pr(>F)"].iloc[1])


def test_a_trend_says_when_the_means_depart_from_its_line(tmp_path):
    """One collapsed level can settle a slope alone (γ on the long-range testbed: 1/4 at chance, the others
    level): the report says that the means are not on a line, by the lack-of-fit F test."""
    gammas = {"1/24": [90.0, 92.0, 91.0], "1/12": [91.0, 93.0, 92.0], "1/6": [92.0, 90.0, 91.5],
              "1/4": [50.0, 52.0, 51.0]}
    md = _gamma_sweep_report(tmp_path, gammas)
    x = [float(Fraction(g)) for g, vs in gammas.items() for _ in vs]
    p = _lack_of_fit_p(x, [v for vs in gammas.values() for v in vs])
    from analysis.stats import lack_of_fit_unequal_spread

    own = lack_of_fit_unequal_spread(np.array(x), np.array([v for vs in gammas.values() for v in vs]))
    assert p < 0.05 and own < 0.05 and "The arms' means depart from a straight line (lack-of-fit F test against one " \
        f"mean per level, {p_equals(p)}; with each level's own spread (a Wald F test of the same line with HC3 " \
        f"variances), {p_equals(own)}): the slope summarises" in md
    from analysis.stats import trend

    # two levels are always on a line: no test
    two = trend(load_runs([str(tmp_path / "g1_24-*"), str(tmp_path / "g1_4-*")], warn=False), "gamma_float")
    assert two["levels"] == 2 and math.isfinite(two["p"]) and math.isnan(two["lack_of_fit_p"])


def test_lack_of_fit_with_each_levels_own_spread_is_the_hc3_wald_test():
    """By hand: the level means m, their HC3 variances s²/(n-1) (each level's own), the restriction R (every
    vector orthogonal to 1 and the levels) and W = (Rm)'(R V R')⁻¹(Rm)/q on F(q, n-k)."""
    from scipy.linalg import null_space

    from analysis.stats import lack_of_fit_unequal_spread

    x = np.repeat([1.0, 2.0, 4.0, 5.0], [3, 4, 3, 5])
    y = np.array([50.1, 52.0, 49.5, 90.2, 60.0, 97.1, 55.3, 91.0, 93.5, 92.2, 70.4, 52.0, 88.8, 99.0, 51.1])
    levels = np.unique(x)
    groups = [y[x == level] for level in levels]
    means = np.array([g.mean() for g in groups])
    variances = np.diag([g.var(ddof=1) / (len(g) - 1) for g in groups])
    restriction = null_space(np.column_stack([np.ones(4), levels]).T).T
    q, dof = restriction.shape[0], len(y) - len(levels)
    gap = restriction @ means
    w = gap @ np.linalg.solve(restriction @ variances @ restriction.T, gap) / q
    assert lack_of_fit_unequal_spread(x, y) == pytest.approx(st.f.sf(w, q, dof), rel=1e-9)
    assert math.isnan(lack_of_fit_unequal_spread(x[:-4], y[:-4]))  # a level with one seed: no spread of its own
    assert math.isnan(lack_of_fit_unequal_spread(x[x < 4], y[x < 4]))  # two levels are always on a line


def test_a_departure_from_the_line_that_rests_on_equal_spreads_says_so(tmp_path):
    """One level whose seeds split between chance and the task, the others all at chance: the pooled F test finds
    the means off a line, the test with each level's own spread does not, and the report claims no departure."""
    from analysis.stats import lack_of_fit_unequal_spread

    gammas = {"1/24": [49.3, 50.1, 49.2], "1/12": [52.3, 49.0, 50.3], "1/6": [50.8, 98.6, 97.4],
              "1/4": [50.3, 52.9, 51.2]}
    md = _gamma_sweep_report(tmp_path, gammas)
    x = np.array([float(Fraction(g)) for g, vs in gammas.items() for _ in vs])
    y = np.array([v for vs in gammas.values() for v in vs])
    pooled, own = _lack_of_fit_p(x, y), lack_of_fit_unequal_spread(x, y)
    assert pooled < 0.05 <= own
    assert (f"The arms' means depart from a straight line if every level's seeds spread alike (lack-of-fit F test "
            f"against one mean per level, {p_equals(pooled)}), which they may not: with each level's own spread "
            f"(a Wald F test of the same line with HC3 variances), {p_equals(own)}.") in md
    assert "the slope summarises a response that is not linear" not in md


def test_figures_redrawn_from_the_same_records_are_the_same_files(tmp_path):
    """Committed figures change only where the data did: no creation date, no random element ids in an SVG,
    and the style's savefig settings (dpi, text kept as text) act when the file is written."""
    for gamma, values in {"1/12": [89.1, 89.9], "1/6": [90.2, 90.6]}.items():
        write_arm(tmp_path / "runs", f"g{gamma.replace('/', '_')}", values, gamma=gamma)
    drawn = []
    for out in ("a", "b"):
        assert report_main([str(tmp_path / "runs"), "--out", str(tmp_path / out)]) == 0
        drawn.append({f.name: f.read_bytes() for f in sorted((tmp_path / out).iterdir()) if f.suffix != ".html"})
    assert drawn[0] == drawn[1] and {"arms.png", "arms.svg"} <= set(drawn[0])
    assert b"<text" in drawn[0]["arms.svg"]  # svg.fonttype=none: labels as text, not glyph paths


def test_curves_are_drawn_at_the_recorded_epochs_and_across_unevaluated_ones(tmp_path):
    """metrics.jsonl numbers epochs from 1; with train.eval_every=5 the epochs between hold no val_top1, and the
    mean line must still join the evaluated ones (a line through NaNs draws nothing)."""
    from analysis.plots import figure_curves

    for seed in (0, 1):
        run_dir = write_run(tmp_path, f"shift-{seed}", seed=seed, val_top1=90.0, epochs=10)
        rows = [{"epoch": e, "train_loss": 1 / e, **({"val_top1": 80.0 + e} if e % 5 == 0 else {})}
                for e in range(1, 11)]
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    runs = load_runs(tmp_path, warn=False)
    [line] = figure_curves(load_curves(tmp_path, warn=False, runs=runs), runs).axes[0].get_lines()
    assert list(line.get_xdata()) == [5, 10] and list(line.get_ydata()) == [85.0, 90.0]
    assert _drawn(line)


def test_curves_of_a_record_numbered_from_0_are_read_from_1(tmp_path):
    """Records written before epochs were numbered from 1 (as the log prints them) read like today's."""

    run_dir = write_run(tmp_path, "shift-0", val_top1=90.0, epochs=2)
    (run_dir / "metrics.jsonl").write_text('{"epoch": 0, "val_top1": 80.0}\n{"epoch": 1, "val_top1": 90.0}\n')
    curves = load_curves(tmp_path, warn=False)
    assert sorted(curves.loc[curves["metric"] == "val_top1", "epoch"]) == [1, 2]


def test_a_best_epoch_metric_never_pools_runs_that_evaluated_at_different_epochs(tmp_path):
    """train.eval_every leaves the arm (it never changes the last epoch's numbers) but best_val_top1 is the best
    of the evaluated epochs only: such runs may be compared on val_top1, not on their best."""
    write_arm(tmp_path, "shift", SHIFT)
    write_arm(tmp_path, "attn", ATTN, mixer="attn")
    config = tmp_path / "shift-0" / "config.yaml"
    effective = yaml.safe_load(config.read_text())
    effective["train"]["eval_every"] = 3
    config.write_text(yaml.safe_dump(effective, sort_keys=False))
    runs = load_runs(tmp_path, warn=False)
    assert runs["arm"].nunique() == 2 and len(verdicts(runs)) == 1
    with pytest.raises(ValueError, match=r"best_val_top1 is the best of the evaluated epochs, and the runs evaluated "
                                         r"every 1 or 3 epochs \(mixer=shift not every 1\)"):
        verdicts(runs, metric="best_val_top1")
    with pytest.raises(ValueError, match="compare val_top1"):
        summarize(runs, metric="best_val_top1")
    # one arm at 3, the other at 1: their bests are of other epochs, within each arm alike
    for seed in range(1, len(SHIFT)):
        config = tmp_path / f"shift-{seed}" / "config.yaml"
        config.write_text(yaml.safe_dump({**effective, "seed": seed}, sort_keys=False))
    runs = load_runs(tmp_path, warn=False)
    with pytest.raises(ValueError, match=r"every 1 or 3 epochs \(mixer=shift not every 1\)"):
        verdicts(runs, metric="best_val_top1")
    # a run resumed under another schedule: config.yaml names the last attempt's only, its attempts both
    for seed in range(len(SHIFT)):
        _set_in_config([tmp_path / f"shift-{seed}"], "train.eval_every", 1)
    summary_path = tmp_path / "attn-0" / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary["attempts_code"] = [{"git_commit": None, "settings": {"train.eval_every": every}, "resumed_at": at}
                                for every, at in ((3, [0, 0]), (1, [2, 0]))]
    summary_path.write_text(json.dumps(summary))
    runs = load_runs(tmp_path, warn=False)
    assert runs.loc[runs["run_dir"] == str(tmp_path / "attn-0"), "eval_every"].item() == "3 + 1"
    assert len(verdicts(runs)) == 1  # the last epoch's numbers: as any other run's
    with pytest.raises(ValueError, match=r"every 1 or 3 \+ 1 epochs \(mixer=attn not every 1\)"):
        verdicts(runs, metric="best_val_top1")


def test_arms_of_one_target_further_apart_than_their_tolerances_allow_are_not_matched():
    """Two arms each within t of one target are at most (1 + t) / (1 - t) - 1 apart (4.08 % at t = 2 %): beyond
    that, "same target" no longer makes them matched (a tolerance=2 typo once let them differ by 47 %). A looser
    tolerance than the default is said beside the difference."""
    import pandas as pd

    from analysis.stats import budget_difference

    def runs(treatment_macs: float, tolerance: float) -> pd.DataFrame:
        return pd.DataFrame({"arm": ["t", "b"], "macs": [treatment_macs, 100.0], "match": ["flops"] * 2,
                             "tolerance": [tolerance] * 2, "budget_target": ["shiftvit_nano flops"] * 2})

    assert budget_difference(runs(104.0, 0.02), "t", "b") == ("+4.0 % MACs (same target)", True)
    assert budget_difference(runs(104.2, 0.02), "t", "b") == ("+4.2 % MACs (same target)", False)
    assert budget_difference(runs(187.0, 0.5), "t", "b") == ("+87 % MACs, ±50 % tolerance (same target)", True)


# --- the validation set's own noise: predictions.npz and the images + seeds test -----------------------------------
def _correct(images: int, right: int, seed: int) -> list:
    """The first ``right`` images right, then one image toggled by the seed: an even seed gets image ``seed`` wrong,
    an odd one the image ``seed`` from the end right (the seeds' own spread: one image either way)."""
    flags = [i < right for i in range(images)]
    flipped = seed if seed % 2 == 0 else images - 1 - seed
    flags[flipped] = not flags[flipped]
    return flags


def test_a_difference_of_three_images_is_not_settled_by_many_seeds(tmp_path):
    """Five seeds per arm that agree image for image, except one image each: the seed test calls 1.5 points a
    difference, yet it is 3 images of 200, which a new draw of validation images could take away."""
    for seed in range(5):
        write_run(tmp_path, f"attn-{seed}", mixer="attn", seed=seed, correct=_correct(200, 170, seed))
        write_run(tmp_path, f"shift-{seed}", seed=seed, correct=_correct(200, 173, seed))
    runs = load_runs(tmp_path, warn=False)
    row = verdicts(runs).iloc[0]
    assert row["p_difference_adj"] < 0.01 and row["diff"] == pytest.approx(1.5)  # what the seeds alone say
    # 3 images apart, 200 images: the per-image difference has SD √(3/200) ≈ 0.12, so its SE is 0.87 points
    assert row["images_p_difference_adj"] > 0.05 and row["images_ci_low"] < 0 < row["images_ci_high"]
    assert row["verdict"].startswith("inconclusive once the validation images' own noise is counted")
    assert "the seeds alone: shift better by 1.50" in row["verdict"]
    report = build([tmp_path], tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    assert "95% CI, images + seeds" in text and "predictions.npz" in text and report is not None


def test_a_difference_over_many_images_stands_with_the_images_counted(tmp_path):
    for seed in range(4):
        write_run(tmp_path, f"attn-{seed}", mixer="attn", seed=seed, correct=_correct(200, 150, seed))
        write_run(tmp_path, f"shift-{seed}", seed=seed, correct=_correct(200, 175, seed))
    row = verdicts(load_runs(tmp_path, warn=False)).iloc[0]
    assert row["images_p_difference_adj"] < 0.01 and 0 < row["images_ci_low"] < 12.5 < row["images_ci_high"]
    # the claim gives the interval that counts the images too, wider than the seeds' own
    assert row["images_ci_low"] < row["ci_low"] and row["images_ci_high"] > row["ci_high"]
    assert row["verdict"] == f"shift better by 12.50 [{row['images_ci_low']:.2f}, {row['images_ci_high']:.2f}]"


def test_an_equivalence_both_tests_support_stands_and_pairs_stay_pairs(tmp_path):
    """Both tests call the arms equivalent within ±1: an equivalence, not "inconclusive" (the seeds alone also call
    them different); paired by seed, the images test uses the seeds the seed test paired, no others."""
    for seed in range(6):  # 2000 images, the arms 4 or 8 images apart (the toggled images differ within a pair)
        write_run(tmp_path, f"attn-{seed}", mixer="attn", seed=seed, correct=_correct(2000, 1700, seed + 1))
        write_run(tmp_path, f"shift-{seed}", seed=seed, correct=_correct(2000, 1706, seed))
    for seed in range(6, 9):  # seeds only the treatment has, much better: outside any pair
        write_run(tmp_path, f"shift-{seed}", seed=seed, correct=_correct(2000, 1800, seed))
    row = verdicts(load_runs(tmp_path, warn=False), pair_by="seed").iloc[0]
    assert row["n_treatment"] == row["n_baseline"] == 6 and row["diff"] == pytest.approx(0.3)
    assert row["images_ci_low"] < 0.3 < row["images_ci_high"] < 1  # the 6 pairs' difference, not the 9 seeds'
    assert row["p_difference_adj"] < ALPHA and row["images_p_equivalence_adj"] < ALPHA
    assert row["verdict"] == "equivalent within ±1; finished seeds without a pair, in no paired test: shift: seeds " \
                             "6, 7, 8"


def test_without_every_run_s_predictions_the_seed_test_stands_alone_and_says_so(tmp_path):
    for seed in range(3):
        write_run(tmp_path, f"attn-{seed}", mixer="attn", seed=seed, correct=_correct(200, 170, seed))
        write_run(tmp_path, f"shift-{seed}", seed=seed, correct=_correct(200, 173, seed))
    write_run(tmp_path, "shift-3", seed=3, val_top1=86.5)  # an older record: no predictions.npz
    row = verdicts(load_runs(tmp_path, warn=False)).iloc[0]
    assert math.isnan(row["images_p_difference"]) and row["verdict"].startswith("shift better by")
    assert row["images_why"] == ("1 of 4 finished runs of mixer=shift have no readable predictions.npz (recorded by "
                                 "older code, or read from wandb)")
    build([tmp_path], tmp_path / "report")
    assert "the seed test alone, with the validation set held fixed: 1 of 4 finished runs" in \
        (tmp_path / "report" / "report.md").read_text()


def test_images_and_seeds_test_counts_the_images_on_top_of_the_seeds():
    rng = np.random.default_rng(1)
    same = (rng.random((4, 300)) < 0.8).astype(float)
    result = images_and_seeds_test(same, same)
    assert result["diff"] == 0 and result["ci_low"] < 0 < result["ci_high"] and result["p_difference"] == 1.0
    a, b = (rng.random((5, 300)) < 0.9).astype(float), (rng.random((3, 300)) < 0.8).astype(float)
    result = images_and_seeds_test(a, b)
    assert result["diff"] == pytest.approx(100 * (a.mean(axis=1).mean() - b.mean(axis=1).mean()))
    # never narrower than Welch on the seeds' accuracies, with the same degrees of freedom
    welch = CompareMeans(DescrStatsW(100 * a.mean(axis=1)), DescrStatsW(100 * b.mean(axis=1))).tconfint_diff(
        usevar="unequal")
    assert result["ci_low"] < welch[0] and result["ci_high"] > welch[1]
    # every image of every seed an independent draw: the seeds' spread is already that binomial noise, which the
    # images term adds again: conservative, by at most about √2 on the SE
    true_se = 100 * math.sqrt(0.9 * 0.1 / 300 / 5 + 0.8 * 0.2 / 300 / 3)
    half = (result["ci_high"] - result["ci_low"]) / 2
    assert 1.96 * true_se < half < st.t.ppf(0.975, 2) * true_se * math.sqrt(2) * 1.5
    with pytest.raises(ValueError, match="over the same 2"):
        images_and_seeds_test(a, b[:, :200])


def test_a_damaged_or_foreign_predictions_file_leaves_the_seed_test_alone_and_is_named(tmp_path):
    for seed in range(3):
        write_run(tmp_path, f"attn-{seed}", mixer="attn", seed=seed, correct=_correct(200, 150, seed))
        write_run(tmp_path, f"shift-{seed}", seed=seed, correct=_correct(200, 175, seed))
    damaged = tmp_path / "shift-1" / "predictions.npz"
    with zipfile.ZipFile(damaged) as archive:  # where the predicted classes' compressed stream lies
        info = archive.getinfo("predicted.npy")
    data = bytearray(damaged.read_bytes())
    name_and_extra = int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little") + \
        int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    data[info.header_offset + 30 + name_and_extra + info.compress_size // 2] ^= 0xFF  # zlib refuses the stream
    damaged.write_bytes(bytes(data))
    row = verdicts(load_runs(tmp_path, warn=False)).iloc[0]
    assert "1 of 3 finished runs of mixer=shift have no readable predictions.npz" in row["images_why"]
    assert row["verdict"].startswith("shift better by 12.50")  # the seed test's own claim, its own interval
    shutil.copy(tmp_path / "attn-0" / "predictions.npz", damaged)  # another run's file: its accuracy is not this run's
    row = verdicts(load_runs(tmp_path, warn=False)).iloc[0]
    assert row["images_why"] == (f"the predictions.npz of {tmp_path / 'shift-1'} gives val_top1 74.50, its record "
                                 "88.00")


# --- the seeds advice: by the test the verdict reads, and no count where the images' noise alone forbids one --------
def test_a_difference_the_images_noise_alone_hides_gets_no_seeds_count(tmp_path):
    """3 images of 200 apart: however many seeds, the images + seeds test cannot settle it, and the advice says so
    instead of naming a count (the seed test alone would name one)."""
    for seed in range(5):
        write_run(tmp_path, f"attn-{seed}", mixer="attn", seed=seed, correct=_correct(200, 170, seed))
        write_run(tmp_path, f"shift-{seed}", seed=seed, correct=_correct(200, 173, seed))
    row = verdicts(load_runs(tmp_path, warn=False)).iloc[0]
    assert row["seeds_never"] and row["seeds_low"] is None and row["seeds_high"] is None
    # 3 images flip between the arms: the per-image difference's variance, less 5 toggled images' luck per arm
    spread = (3 * 100 ** 2 - 200 * 1.5 ** 2) / 199
    luck = 5 * (100 ** 2 * 0.2 * 0.8 * 5 / 4) / 200  # one seed's, per arm: 5 images each wrong (right) on 1 of 5
    assert row["images_between_var"] == pytest.approx(spread - 2 * luck / 5)
    # its interval: the 3 images differ in every seed, only the toggled images' luck moves the estimate
    low, high = row["images_between_var_low"], row["images_between_var_high"]
    assert 0.9 * row["images_between_var"] < low < row["images_between_var"] < high < 1.1 * row["images_between_var"]
    # how many images would do, with many seeds, at the floor's low end: d / √(low / N) must reach z(.975) + z(.8)
    needed = math.ceil(low * (st.norm.isf(0.025) + st.norm.isf(0.2)) ** 2 / 1.5 ** 2)
    assert row["verdict"].endswith("no number of seeds would settle it on these 200 validation images: their own "
                                   f"noise (SE at least {math.sqrt(low / 200):.2f} points however many seeds, at the "
                                   "low end of its 95 % interval) leaves under 80 % power; more validation images "
                                   f"would (at least {needed}, with many seeds)")
    # and it is so: a thousand seeds per arm, these five seeds' outcomes 200 times over, leave the test at p > 0.05
    many_t = np.array([_correct(200, 173, seed % 5) for seed in range(1000)], dtype=float)
    many_b = np.array([_correct(200, 170, seed % 5) for seed in range(1000)], dtype=float)
    assert images_and_seeds_test(many_t, many_b)["p_difference"] > ALPHA


def test_the_seeds_advice_counts_the_images_term_as_statsmodels_would_an_extra_variance():
    """With the images term, the power at n seeds is the t test's at the SD that carries it too: statsmodels'
    TTestIndPower at sd_eff² = sd² + n/2 · (between + within/n)/images, so the count is its, and more than the
    seeds alone need."""
    from analysis.stats import _power, _seeds_for

    images = (250.0, 500.0, 360)
    diff, sd, alpha = 3.0, 0.9, ALPHA
    n = _seeds_for(diff, sd, 1.0, False, alpha, images)
    for count, expect in ((n, True), (n - 1, False)):
        sd_eff = math.sqrt(sd ** 2 + count / 2 * (images[0] + images[1] / count) / images[2])
        power = TTestIndPower().power(diff / sd_eff, count, alpha)
        assert _power(diff, sd, count, 1.0, False, alpha, images) == pytest.approx(power)
        assert bool(power >= 0.8) is expect
    assert n > _seeds_for(diff, sd, 1.0, False, alpha) >= 2


@pytest.mark.parametrize("paired", [False, True])
def test_the_seeds_search_gives_statsmodels_power_where_statsmodels_solve_power_misses(paired):
    """Without the images term the count is the fewest seeds at which statsmodels' own power reaches 80 %, over a
    grid of differences, SDs, margins and levels; including a large effect where ``solve_power`` answers 2 pairs at
    a power of 0.11."""
    from statsmodels.stats.power import TTestPower

    from analysis.stats import _seeds_for

    power = TTestPower() if paired else TTestIndPower()
    for diff in (0.1, 0.5, 0.9, 1.3, 2.5, 4.0):
        for sd in (0.2, 0.7, 1.5, 3.0):
            for margin, alpha in ((1.0, 0.05), (0.5, 0.01), (1.0, 0.005)):
                n = _seeds_for(diff, sd, margin, paired, alpha)
                if n is None:
                    continue
                side = abs(diff) < margin
                effect = (margin - abs(diff)) / sd if side else abs(diff) / sd
                alternative = "larger" if side else "two-sided"
                at_n = power.power(effect, n, alpha, alternative=alternative)
                assert math.isnan(at_n) or at_n >= 0.8, (diff, sd, margin, alpha, n)  # NaN: scipy's far tail
                below = power.power(effect, n - 1, alpha, alternative=alternative) if n > 2 else 0.0
                assert math.isnan(below) or below < 0.8, (diff, sd, margin, alpha, n)
    if paired:
        assert power.power(6.5, 2, 0.01) < 0.2 and _seeds_for(1.3, 0.2, 1.0, True, 0.01) == 4


def test_the_images_floor_is_the_arms_true_per_image_difference():
    """The images term split by the method of moments: on arms drawn image by image from known probabilities, the
    floor is the variance of the true per-image difference and the rest one seed's own luck, paired or not."""
    rng = np.random.default_rng(0)
    count = 4000
    p_b = rng.uniform(0.5, 1.0, count)
    p_t = np.clip(p_b + rng.choice([-0.3, 0.0, 0.0, 0.3], count), 0.0, 1.0)
    t = (rng.random((6, count)) < p_t).astype(float)
    b = (rng.random((6, count)) < p_b).astype(float)
    luck = 100 ** 2 * (np.mean(p_t * (1 - p_t)) + np.mean(p_b * (1 - p_b)))
    for paired in (False, True):
        result = images_and_seeds_test(t, b, paired=paired)
        assert result["images"] == count
        assert result["between"] == pytest.approx(np.var(100 * (p_t - p_b), ddof=1), rel=0.1)
        assert result["within"] == pytest.approx(luck, rel=0.05)


def test_with_many_comparisons_the_advice_names_the_one_comparison_that_would_settle_it():
    """At Holm's α/7 the images' noise alone forbids any count, at α = 0.05 it does not: the advice says that a
    comparison fixed in advance would settle it, and on how many new seeds (the shift_vs_swin design)."""
    from analysis.stats import Comparison, _advise_seeds, _seeds_range, seeds_advice

    c = Comparison("shift", "attn", WELCH_TEST, 3, 3, diff=2.6, noise_sd=0.9, noise_dof=4,
                   images_count=360, images_between_var=250.0, images_within_var=500.0,
                   images_between_var_low=250.0, images_between_var_high=250.0)
    _advise_seeds(c, ALPHA / 7)
    assert c.seeds_never and not c.seeds_maybe_never
    low, high = _seeds_range(2.6, 0.9, 4, 1.0, False, ALPHA, (250.0, 500.0, 360))
    assert low is not None and 3 < low <= high
    assert seeds_advice(c).endswith(f"with many seeds), or perhaps this comparison alone, fixed in advance at "
                                    f"α = 0.05, on about {low}–{high} new seeds per arm")
    _advise_seeds(c, ALPHA)
    assert not c.seeds_never and (c.seeds_low, c.seeds_high) == (low, high)
    assert seeds_advice(c) == (f"about {low}–{high} seeds per arm would settle it (80 % power, the 360 validation "
                               "images' noise counted)")


def test_a_trend_counts_the_images_noise_where_every_run_recorded_predictions(tmp_path):
    import statsmodels.api as sm

    from analysis.stats import trend

    right = {"1/24": 170, "1/12": 172, "1/6": 174}  # one image apart per level per seed: 2 images per step
    for gamma, base in right.items():
        for seed in range(3):
            write_run(tmp_path, f"g{gamma.replace('/', '_')}-{seed}", gamma=gamma, seed=seed,
                      correct=_correct(200, base + seed % 2, seed))
    runs = load_runs(tmp_path, warn=False)
    result = trend(runs, "gamma_float")
    x = np.repeat([1 / 24, 1 / 12, 1 / 6], 3)
    fit = sm.OLS(runs.set_index("job").loc[[f"g{g.replace('/', '_')}-{s}" for g in right for s in range(3)],
                                           "val_top1"].to_numpy(), sm.add_constant(x)).fit()
    assert result["slope"] == pytest.approx(fit.params[1]) and result["p"] < ALPHA  # the seeds alone: settled
    # a few images carry the whole slope: counted as noise, the interval is wider and holds 0
    assert result["images_ci_low"] < result["ci_low"] and result["images_ci_high"] > result["ci_high"]
    assert result["images_p"] > 0.05 and result["images_ci_low"] < 0 < result["images_ci_high"]
    build([tmp_path], tmp_path / "r")
    assert f"p = {result['images_p']:.3f}." in (tmp_path / "r" / "report.md").read_text()
    (tmp_path / "g1_6-0" / "predictions.npz").unlink()
    assert trend(load_runs(tmp_path, warn=False), "gamma_float")["images_why"] == (
        "1 of 3 finished runs of mixer=shift gamma=1/6 have no readable predictions.npz (recorded by older code, "
        "or read from wandb)")


def test_the_floor_is_uncertain_and_the_advice_says_no_count_only_where_its_low_end_forbids_one():
    """From 3 seeds the floor's estimate is uncertain: where its interval's low end lets seeds settle the comparison
    and its high end does not, the advice names the fewest seeds that might and the images that would; where the
    low end forbids too, no count."""
    from analysis.stats import Comparison, _advise_seeds, _images_needed, _sd_interval, _seeds_for, seeds_advice

    c = Comparison("shift", "attn", WELCH_TEST, 3, 3, diff=2.6, noise_sd=0.9, noise_dof=4,
                   images_count=360, images_between_var=250.0, images_within_var=500.0,
                   images_between_var_low=90.0, images_between_var_high=420.0)
    _advise_seeds(c, ALPHA / 7)
    assert not c.seeds_never and c.seeds_maybe_never and c.seeds_high is None
    fewest = _seeds_for(2.6, _sd_interval(0.9, 4)[0], 1.0, False, ALPHA / 7, (90.0, 500.0, 360))
    assert c.seeds_low == fewest and fewest > 2
    images = _images_needed(2.6, 1.0, False, ALPHA / 7, (420.0, 500.0, 360))
    assert images > 360
    assert seeds_advice(c) == (f"{fewest} or more seeds per arm might settle it (80 % power at the corrected "
                               "α = 0.0071, the 360 validation images' noise counted), or none: near the high end of "
                               "its 95 % interval, the images' own noise alone leaves under 80 % power; with many "
                               f"seeds, {images:,} validation images would even there")
    c.images_between_var_low = 240.0  # the low end forbids too
    _advise_seeds(c, ALPHA / 7)
    assert c.seeds_never and not c.seeds_maybe_never and "at least 0.82 points" in seeds_advice(c)


@pytest.mark.parametrize("paired", [False, True])
def test_the_floors_interval_covers_the_true_floor_of_these_images(paired):
    """The jackknife over seeds: on arms drawn image by image from known probabilities, 3 seeds per arm, the 95 %
    interval holds the floor of these images (the variance over them of the true difference) in about 95 % of
    draws of the seeds; the images stay, as the advice's "on these N validation images" says."""
    rng = np.random.default_rng(0)
    count, draws = 360, 200
    p_b = rng.uniform(0.6, 1.0, count)
    p_t = np.clip(p_b + rng.choice([-0.3, 0.0, 0.0, 0.0, 0.3], count), 0.0, 1.0)
    floor = np.var(100 * (p_t - p_b), ddof=1)
    held = 0
    for _ in range(draws):
        t, b = ((rng.random((3, count)) < p).astype(float) for p in (p_t, p_b))
        result = images_and_seeds_test(t, b, paired=paired)
        held += result["between_low"] <= floor <= result["between_high"]
    assert 0.88 <= held / draws <= 0.99
    # with 2 seeds no seed can be left out: the floor could be anything, and no advice says "no number of seeds"
    result = images_and_seeds_test(t[:2], b[:2], paired=paired)
    assert (result["between_low"], result["between_high"]) == (0.0, math.inf)


def test_with_two_seeds_the_advice_says_the_floor_cannot_be_estimated(tmp_path):
    for seed in range(2):
        write_run(tmp_path, f"attn-{seed}", mixer="attn", seed=seed, correct=_correct(200, 170, seed))
        write_run(tmp_path, f"shift-{seed}", seed=seed, correct=_correct(200, 176, seed))
    row = verdicts(load_runs(tmp_path, warn=False)).iloc[0]
    assert not row["seeds_never"] and row["seeds_maybe_never"] and row["seeds_high"] is None
    assert row["verdict"].endswith(f"{row['seeds_low']} or more seeds per arm might settle it (80 % power, the 200 "
                                   "validation images' noise counted), or none: with 2 seeds, the part of the images' "
                                   "noise that more seeds do not remove cannot be told from one seed's luck")


def _enumerated_p(t, b, paired, alternative):
    """The permutation p of mean(t) - mean(b) by listing every rearrangement: swaps within pairs when paired, else
    every split of the pooled values into groups of the arms' sizes. Two-sided: twice the smaller tail (as scipy)."""
    t, b = np.asarray(t, dtype=float), np.asarray(b, dtype=float)
    observed = t.mean() - b.mean()
    if paired:
        null = [np.where(flips, b - t, t - b).mean() for flips in itertools.product([False, True], repeat=len(t))]
    else:
        pooled = np.concatenate([t, b])
        null = [pooled[list(group)].mean() - np.delete(pooled, list(group)).mean()
                for group in itertools.combinations(range(len(pooled)), len(t))]
    null = np.array(null)
    greater, less = np.mean(null >= observed - 1e-9), np.mean(null <= observed + 1e-9)
    return {"greater": greater, "less": less, "two-sided": min(1.0, 2 * min(greater, less))}[alternative]


@pytest.mark.parametrize("paired", [False, True], ids=["unpaired", "paired"])
def test_the_permutation_tests_are_every_rearrangement_of_the_seeds(paired):
    t = np.array([91.0, 92.5, 90.5, 93.0, 91.7])
    b = np.array([90.0, 91.5, 91.0, 90.5, 91.2]) if paired else np.array([90.0, 91.5, 91.0, 90.5])
    result = permutation_tests(t, b, margin=1.5, paired=paired)
    assert result["p_difference"] == pytest.approx(_enumerated_p(t, b, paired, "two-sided"))
    # equivalence within ±1.5: the treatment moved onto each bound, one-sided each way, the larger p
    assert result["p_equivalence"] == pytest.approx(max(_enumerated_p(t + 1.5, b, paired, "greater"),
                                                        _enumerated_p(t - 1.5, b, paired, "less")))
    assert result["floor"] == pytest.approx(2 / (2 ** 5 if paired else math.comb(9, 5)))
    # the floor is reached by seeds of one arm all above the other's, and only then
    apart = permutation_tests(t + 10, b, paired=paired)["p_difference"]
    assert apart == pytest.approx(result["floor"]) and result["p_difference"] > result["floor"]


@pytest.mark.parametrize("paired", [False, True], ids=["unpaired", "paired"])
def test_the_permutation_tests_count_tied_rearrangements_of_accuracies_as_ties(paired):
    """Accuracies are k/N·100: rearrangements of the seeds with the same mean difference come out 1e-14 apart, and
    counted as less extreme they made p too small (0.040 where the exact p is 0.071). The same tests on the image
    counts, integers that tie exactly, are the exact p."""
    treated, base = np.array([332, 332, 332, 335, 334]), np.array([336, 335, 337, 334, 334])
    if paired:
        treated, base = np.array([331, 335, 335, 330, 332]), np.array([333, 334, 337, 329, 332])
    result = permutation_tests(100 * treated / 360, 100 * base / 360, paired=paired)
    counts = permutation_tests(treated.astype(float), base.astype(float), paired=paired)
    assert result["p_difference"] == pytest.approx(counts["p_difference"])
    assert result["p_difference"] == pytest.approx(_enumerated_p(treated.astype(float), base.astype(float), paired,
                                                                 "two-sided"))
    if not paired:
        assert result["p_difference"] == pytest.approx(10 / 140)  # 0.071: not below 0.05


def test_the_trends_permutation_test_counts_tied_orders_as_ties():
    """The trend's slope over γ, on accuracies, against the same orders ranked in exact integer arithmetic: the
    slope's numerator on γ in units of 1/24 and on image counts (its denominator is the same for every order)."""
    from analysis.stats import _slope

    units, counts = np.repeat([1, 2, 4], 3), np.array([332, 333, 332, 333, 332, 333, 334, 330, 332])

    def p_of(levels, statistic):
        return st.permutation_test((levels,), statistic, permutation_type="pairings", vectorized=True,
                                   n_resamples=PERMUTATIONS, rng=0).pvalue

    def numerator(x, axis):
        x = np.rint(x).astype(np.int64)
        return len(counts) * (x * counts).sum(axis=axis) - x.sum(axis=axis) * counts.sum()

    accuracies = 100 * counts / 360
    assert p_of(units / 24, lambda x, axis: _slope(x, accuracies, axis)) == pytest.approx(p_of(units, numerator))


def test_past_the_exact_count_the_permutation_test_samples_reproducibly():
    rng = np.random.default_rng(1)
    t, b = 90 + rng.normal(size=12), 89.5 + rng.normal(size=12)  # 2.7 million splits
    first, again = permutation_tests(t, b), permutation_tests(t, b)
    assert first == again and first["floor"] == pytest.approx(2 / (PERMUTATIONS + 1))
    assert first["p_difference"] == pytest.approx(st.ttest_ind(t, b).pvalue, abs=0.05)  # normal seeds: they agree


def test_the_seeds_a_permutation_test_needs_to_reach_a_level():
    assert permutation_seeds(0.05, paired=False) == 4  # 2/70 = 0.029; 3 and 3: 2/20 = 0.10
    assert permutation_seeds(0.01, paired=False) == 5  # 2/252
    assert permutation_seeds(0.05, paired=True) == 6  # 2/64; 5 pairs: 2/32 = 0.0625
    assert permutation_seeds(2 / (PERMUTATIONS + 1), paired=False) is None


def test_a_difference_three_seeds_cannot_show_without_normal_seeds_says_what_it_rests_on(tmp_path):
    write_arm(tmp_path / "three", "shift", [93.0, 92.5, 93.4])
    write_arm(tmp_path / "three", "attn", [90.0, 90.5, 89.6], mixer="attn")
    row = verdicts(load_runs(tmp_path / "three", warn=False)).iloc[0]
    assert row["p_difference_adj"] < ALPHA and row["permutation_p_difference"] == pytest.approx(0.1)
    assert row["verdict"] == (
        f"shift better by 2.93 [{row['ci_low']:.2f}, {row['ci_high']:.2f}], if the seeds' spread is normal: the "
        "permutation test over seeds, which does not assume so, gives p = 0.100 for the difference (Holm); 3 and 3 "
        "seeds can give no p below 0.100, and 4 or more seeds per arm could reach α = 0.05")
    assert report_main([str(tmp_path / "three"), "--out", str(tmp_path / "r")]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    assert "p difference, permutation (Holm)" in md and row["verdict"] in md and "no two-sided p below 0.100" in md
    write_arm(tmp_path / "four", "shift", [93.0, 92.5, 93.4, 92.8])  # 4 and 4, all apart: 2/70
    write_arm(tmp_path / "four", "attn", [90.0, 90.5, 89.6, 90.2], mixer="attn")
    row = verdicts(load_runs(tmp_path / "four", warn=False)).iloc[0]
    assert row["permutation_p_difference"] == pytest.approx(2 / 70)
    assert row["verdict"] == f"shift better by 2.85 [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"


def test_an_equivalence_three_seeds_cannot_show_without_normal_seeds_says_so(tmp_path):
    write_arm(tmp_path, "shift", [90.0, 90.1, 90.2])
    write_arm(tmp_path, "attn", [90.05, 90.1, 90.15], mixer="attn")
    row = verdicts(load_runs(tmp_path, warn=False)).iloc[0]
    assert row["p_equivalence_adj"] < ALPHA <= row["permutation_p_equivalence_adj"]
    assert row["verdict"] == (
        "equivalent within ±1, if the seeds' spread is normal: the permutation test over seeds, which does not "
        f"assume so, gives {p_equals(row['permutation_p_equivalence_adj'])} for the equivalence (Holm); 3 and 3 "
        "seeds can give no p below 0.100, and 4 or more seeds per arm could reach α = 0.05")


def test_a_bimodal_arm_the_t_test_calls_better_is_not_called_so_without_its_condition(tmp_path):
    """Six seeds per arm, enough for the permutation test to reach 0.002: two seeds of the treatment stayed at
    chance, below every seed of the baseline. Welch's t, taking the spread to be normal, calls the difference
    (p = 0.03); the seeds' rearrangements do not (28 of 924 are as extreme, p = 0.06)."""
    write_arm(tmp_path, "shift", [99.0, 98.5, 99.2, 98.8, 48.0, 49.0])
    write_arm(tmp_path, "attn", [50.0, 51.0, 52.0, 50.5, 51.5, 49.5], mixer="attn")
    row = verdicts(load_runs(tmp_path, warn=False)).iloc[0]
    assert row["p_difference_adj"] < ALPHA <= row["permutation_p_difference_adj"]
    assert row["verdict"].endswith(", if the seeds' spread is normal: the permutation test over seeds, which does "
                                   "not assume so, gives p = 0.061 for the difference (Holm)")


def test_a_seeds_advice_below_what_the_permutation_test_needs_says_how_many_it_needs(tmp_path):
    """2 seeds per arm far apart but noisy: the t test's power might be reached at 3 seeds per arm, where the
    permutation test can give no p below 0.10; the advice names the 4 it needs to reach 0.05."""
    write_arm(tmp_path, "shift", [95.0, 85.0])
    write_arm(tmp_path, "attn", [80.0, 82.0], mixer="attn")
    row = verdicts(load_runs(tmp_path, warn=False)).iloc[0]
    assert row["verdict"].startswith("inconclusive: about ") and row["seeds_low"] < permutation_seeds(0.05, False)
    assert row["verdict"].endswith("(80 % power), 4 or more for the permutation test over seeds to reach that "
                                   "level too")


def test_seeds_that_learn_or_stay_at_chance_are_counted_against_the_raw_pixels(tmp_path):
    """Where seeds either learn the task or stay near chance, the report counts the seeds of each arm above the
    better raw-pixel baseline + margin and compares the counts by Fisher's exact test, beside the means' verdict."""
    best = headroom_of(RELATIONS).best_baseline[1]
    shift = [best + 20, best + 2, 52.0, best + 18, best + 1.5, best + 15]  # 5 of 6 above it by more than 1
    attn = [52.0, 51.0, best + 0.5, 50.0, 54.0, 52.0]  # none by more than 1
    write_arm(tmp_path, "shift", shift)
    write_arm(tmp_path, "attn", attn, mixer="attn")
    row = verdicts(load_runs(tmp_path, warn=False)).iloc[0]
    assert (row["beats_raw_treatment"], row["beats_raw_baseline"]) == (5, 0)
    assert row["beats_raw_p"] == pytest.approx(st.fisher_exact([[5, 1], [0, 6]]).pvalue)
    assert row["beats_raw_p_adj"] == pytest.approx(row["beats_raw_p"])  # one comparison
    assert report_main([str(tmp_path), "--out", str(tmp_path / "r")]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    assert "| seeds beating raw pixels | p seeds beating raw pixels, Fisher (Holm) |" in md
    assert f"| 5 of 6 vs 0 of 6 | {p_text(row['beats_raw_p_adj'])} |" in md
    # another metric than top-1 is not what the raw-pixel baselines score: no count
    other = verdicts(load_runs(tmp_path, warn=False), metric="best_val_top1").iloc[0]
    assert math.isnan(other["beats_raw_p"]) and other["beats_raw_treatment"] is None
    # paired by seed, the counts are over the complete pairs the tests used: a seed only shift has is left out
    write_run(tmp_path, "shift-6", seed=6, val_top1=best + 10)
    unpaired, paired = (verdicts(load_runs(tmp_path, warn=False), pair_by=by).iloc[0] for by in (None, "seed"))
    assert (unpaired["beats_raw_treatment"], unpaired["n_treatment"]) == (6, 7)
    assert (paired["beats_raw_treatment"], paired["beats_raw_baseline"], paired["n_treatment"]) == (5, 0, 6)


def test_a_comparison_across_recipes_says_so_and_a_recipe_ablation_does_not(tmp_path):
    """A mixer compared with a baseline trained for other epochs: matched per-image MACs do not make it a mixer
    comparison, so the verdict and the report name the recipe difference; arms that differ in the recipe alone
    (a training-scheme ablation) compare recipes, their question, and are not flagged."""
    sweep = tmp_path / "sweep"
    write_arm(sweep, "shift3", [90.0, 91.0, 92.0], mixer="shift", epochs=3)
    write_arm(sweep, "identity1", [80.5, 81.5, 80.0], mixer="identity", epochs=1)
    write_arm(sweep, "identity3", [90.5, 91.5, 89.0], mixer="identity", epochs=3)
    table = verdicts(load_runs(sweep, warn=False), baseline="mixer=identity epochs=1").set_index("treatment")
    across = table.loc["mixer=shift epochs=3"]
    assert across["recipe_differs"] == "epochs 3 vs 1" and across["budget_matched"]
    assert across["verdict"].endswith("; the arms also differ in their recipe (epochs 3 vs 1): the difference is "
                                      "theirs together")
    assert table.loc["mixer=identity epochs=3", "recipe_differs"] == ""
    assert "recipe" not in table.loc["mixer=identity epochs=3", "verdict"]
    assert report_main([str(sweep), "--baseline", "mixer=identity epochs=1", "--out", str(tmp_path / "r")]) == 0
    text = (tmp_path / "r" / "report.md").read_text()
    assert "| recipe differs |" in text and "| epochs 3 vs 1 |" in text


def _set_in_config(run_dirs, key: str, value) -> None:
    """Edit each record's config.yaml: ``key`` (dotted, at most one dot) set to ``value``."""
    for run_dir in run_dirs:
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        *section, name = key.split(".")
        (config[section[0]] if section else config)[name] = value
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.mark.parametrize("key, value, differs", [
    ("train.clip_grad", 1.0, "train.clip_grad 1.0 vs null"),  # null in the other arm: clipping off
    ("train.aug_repeats", 3, "train.aug_repeats 3 vs 0"),  # 0 in the other arm: the old behaviour of an added key
    ("world_size", 2, "world_size 2 vs 1"),  # the total batch of two processes
], ids=["null", "added_key_at_old_value", "world_size"])
def test_a_recipe_setting_that_one_arm_leaves_at_null_or_at_its_old_value_is_a_recipe_difference(
        tmp_path, key, value, differs):
    """A setting that one arm turns on where the other leaves it null (or at the value older records ran with,
    which the arms read as the same as absent) must still reach the labels, the recipe check and the trend: it was
    left out as "does not apply", and the verdict credited the mixer with what clipping or augmentation did."""
    sweep = tmp_path / "sweep"
    write_arm(sweep, "shift", [88.0, 89.0, 90.0, 89.5], mixer="shift")
    write_arm(sweep, "attn", [84.0, 85.0, 84.5, 85.5], mixer="attn")
    _set_in_config(sweep.glob("shift-*"), key, value)
    runs = load_runs(sweep, warn=False)
    assert key in runs.attrs["arm_columns"]
    row = verdicts(runs).iloc[0]
    assert row["recipe_differs"] == differs
    assert row["verdict"].endswith(f"; the arms also differ in their recipe ({differs}): the difference is theirs "
                                   "together")


def test_a_trend_is_not_fitted_over_levels_that_differ_in_their_recipe_too(tmp_path):
    sweep = tmp_path / "sweep"
    for gamma, values in (("1/24", [84.0, 85.0, 84.5]), ("1/12", [85.0, 86.0, 85.5]), ("1/6", [88.0, 89.0, 88.5])):
        write_arm(sweep, f"g{gamma.replace('/', '_')}", values, mixer="shift", gamma=gamma)
    assert one_factor(load_runs(sweep, warn=False)) == "gamma_float"
    _set_in_config(sweep.glob("g1_6-*"), "train.clip_grad", 1.0)  # clipping at the largest γ only
    runs = load_runs(sweep, warn=False)
    assert runs.attrs["arm_columns"] == ["mixer", "gamma", "train.clip_grad"] and one_factor(runs) is None


def test_the_runs_table_shows_each_run_s_value_of_the_metric_compared(tmp_path):
    """--metric best_val_top1 compares the best epochs: the per-run table shows that value, not the last epoch's."""
    write_arm(tmp_path, "shift", [91.0, 92.0])
    write_arm(tmp_path, "attn", [90.0, 90.5], mixer="attn")
    for run in tmp_path.iterdir():
        summary = json.loads((run / "summary.json").read_text())
        summary["best_val_top1"] = summary["val_top1"] + 1.25
        (run / "summary.json").write_text(json.dumps(summary))
    assert report_main([str(tmp_path), "--metric", "best_val_top1", "--out", str(tmp_path / "r")]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    runs = md.split("## Runs loaded")[1].split("## Runs skipped")[0]
    header = next(line for line in runs.splitlines() if line.startswith("|"))
    assert "best_val_top1" in header and "| val_top1 |" not in header
    assert "| 93.25 |" in runs and "| 92.00 |" not in runs


def test_the_report_command_prints_its_conclusions_beside_the_files_it_wrote(tmp_path, capsys):
    """The verdicts on the terminal (the evidence stays in the files): each comparison's, or the trend."""
    write_arm(tmp_path / "a", "shift", SHIFT)
    write_arm(tmp_path / "a", "attn", ATTN, mixer="attn")
    [row] = verdicts(load_runs(tmp_path / "a", warn=False)).to_dict("records")
    assert report_main([str(tmp_path / "a"), "--out", str(tmp_path / "ra")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"mixer=shift vs mixer=attn: {row['verdict']}", f"wrote {tmp_path / 'ra' / 'report.md'}",
                     f"wrote {tmp_path / 'ra' / 'report.html'}"]
    for gamma, values in {"1/12": [89.1, 89.9], "1/6": [90.2, 90.6]}.items():
        write_arm(tmp_path / "g", f"g{gamma.replace('/', '_')}", values, gamma=gamma)
    assert report_main([str(tmp_path / "g"), "--out", str(tmp_path / "rg")]) == 0
    [trend_line, *_] = capsys.readouterr().out.splitlines()
    md = (tmp_path / "rg" / "report.md").read_text()
    assert trend_line.startswith("Trend over gamma (one-factor sweep): Least-squares slope of val_top1 on gamma")
    assert trend_line.split(": ", 1)[1] in md


def test_arms_are_ordered_by_their_numbers_not_their_text(tmp_path):
    for epochs in (20, 3, 100):
        write_arm(tmp_path, f"e{epochs}", [90.0, 91.0], epochs=epochs)
    runs = load_runs(tmp_path, warn=False)
    assert list(dict.fromkeys(runs["arm"])) == [f"mixer=shift epochs={e}" for e in (3, 20, 100)]


def test_arms_at_the_ceiling_are_said_to_be_within_the_validation_set_s_noise_of_it(tmp_path):
    write_arm(tmp_path, "shift", [100.0, 100 * 359 / 360, 100.0], data=DIGITS)
    write_arm(tmp_path, "attn", [100 * 359 / 360, 100.0, 100 * 359 / 360], mixer="attn", data=DIGITS)
    [row] = verdicts(load_runs(tmp_path, warn=False)).to_dict("records")
    images = headroom_of(DIGITS).val_images
    assert row["ceiling"] == f"every arm is within the validation set's noise of 100 % (1.96 binomial SEs on " \
        f"{images} images)"
    assert row["verdict"].startswith(f"{NO_HEADROOM}: {row['ceiling']}")
