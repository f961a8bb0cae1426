"""Recompute the permutation p-values (Holm) of the committed reports in docs/results from their sweep.csv.

Reports made before commit 2541619 took the difference of means as a float, so rearrangements of the seeds with the
same difference of k/N accuracies came out 1e-14 apart and did not tie: p could come out too small. This script
computes each report's permutation columns both ways, for the comparisons its verdict table holds, and prints every
value shown in a report that either way does not give:

    python experiments/recheck_permutation_p.py

The records themselves are not committed: each arm is the group of sweep.csv's jobs with the same overrides but
the seed, matched to the report's arm by the mean and seed SD the report prints; a seed an arm finished twice is
averaged, as the report does.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import pandas as pd
from scipy import stats as st
from statsmodels.stats.multitest import multipletests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis.stats import (  # noqa: E402
    CORRECTION,
    DEFAULT_MARGIN,
    DEFAULT_METRIC,
    PERMUTATIONS,
    p_text,
    permutation_tests,
)
from shiftvit.multirun import SWEEP_CSV  # noqa: E402
from shiftvit.records import COMPLETED  # noqa: E402

# The tables' headers as the committed reports print them: the format of those files, which the report code of
# today need not keep (its own names are analysis.report's), so they are written out here
COLUMNS = {"p_equivalence": "p equivalence, permutation (Holm)", "p_difference": "p difference, permutation (Holm)"}
ARMS_TABLE, VERDICT_TABLE, SEED_SD = "| arm | finished |", "| treatment | baseline |", "seed SD"
PAIRED = "paired by seed tests of d"  # the verdict section's words for the test it ran
REPORT = "report.md"


def _float_difference(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
    return x.mean(axis=axis) - y.mean(axis=axis)


def before_the_fix(treatment: np.ndarray, baseline: np.ndarray, paired: bool) -> Dict[str, float]:
    """``permutation_tests`` as it was: the same tests on the unrounded statistic."""
    def p_value(moved: np.ndarray, alternative: str) -> float:
        return float(st.permutation_test((moved, baseline), _float_difference, vectorized=True, rng=0,
                                         permutation_type="samples" if paired else "independent",
                                         n_resamples=PERMUTATIONS, alternative=alternative).pvalue)

    return dict(p_difference=p_value(treatment, "two-sided"),
                p_equivalence=max(p_value(treatment + DEFAULT_MARGIN, "greater"),
                                  p_value(treatment - DEFAULT_MARGIN, "less")))


def arms_by_label(report: str, runs: pd.DataFrame) -> Dict[str, pd.Series]:
    """Each arm of the report's arms table -> its finished seeds' top-1 (one per seed, averaged where it finished
    twice). sweep.csv holds each job's overrides, not its whole config: its jobs are grouped by their overrides less
    the seed, and each group is the arm whose mean and seed SD the report prints (where one group has them)."""
    groups = {}
    for job, rows in runs.groupby(runs["overrides"].str.replace(r"(^| )seed=\S+", "", regex=True)):
        groups[job] = rows.groupby("seed")[DEFAULT_METRIC].mean()
    arms = {}
    for row in table_rows(report, ARMS_TABLE):
        printed = (row.get(f"mean {DEFAULT_METRIC}"), row.get(SEED_SD))
        matches = [seeds for seeds in groups.values() if (f"{seeds.mean():.2f}", f"{seeds.std():.2f}") == printed]
        if len(matches) == 1:
            arms[row["arm"]] = matches[0]
    return arms


def table_rows(report: str, header: str) -> List[Dict[str, str]]:
    """The rows of the report's first table whose header starts with ``header``, as {column: cell}."""
    lines = report.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(header)), None)
    if start is None:
        return []
    head = [cell.strip() for cell in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(head, [cell.strip() for cell in line.strip("|").split("|")])))
    return rows


def recheck(folder: Path) -> List[str]:
    report = (folder / REPORT).read_text()
    runs = pd.read_csv(folder / SWEEP_CSV)
    runs = runs[runs["status"] == COMPLETED]
    paired = PAIRED in report
    names, shown, before, after, problems = [], [], [], [], []
    arms = arms_by_label(report, runs)
    verdict_rows = table_rows(report, VERDICT_TABLE)
    if not verdict_rows or COLUMNS["p_difference"] not in verdict_rows[0]:  # another format: say so, rather than
        # find nothing to differ
        return [f"{folder.name}: no verdict table ({VERDICT_TABLE}) with a column {COLUMNS['p_difference']!r} in its "
                f"{REPORT}"]
    for row in verdict_rows:
        if not row.get(COLUMNS["p_difference"]):
            continue  # too few seeds for a test
        t, b = (arms.get(row[side], pd.Series(dtype=float)) for side in ("treatment", "baseline"))
        if paired:
            common = sorted(set(t.index) & set(b.index))
            t, b = t.loc[common], b.loc[common]
        if len(t) < 2 or len(b) < 2:
            problems.append(f"{folder.name} | {row['treatment']} vs {row['baseline']}: no arm of sweep.csv has "
                            "the mean and seed SD the report prints")
            continue
        names.append(f"{row['treatment']} vs {row['baseline']}")
        shown.append(row)
        before.append(before_the_fix(t.to_numpy(), b.to_numpy(), paired))
        after.append(permutation_tests(t.to_numpy(), b.to_numpy(), DEFAULT_MARGIN, paired))
    for field, column in COLUMNS.items():
        if not names:
            break
        old = multipletests([r[field] for r in before], method=CORRECTION)[1]
        new = multipletests([r[field] for r in after], method=CORRECTION)[1]
        for name, row, p_old, p_new in zip(names, shown, old, new):
            if p_text(p_old) != row[column] or p_text(p_new) != row[column]:
                problems.append(f"{folder.name} | {name} | {column}: shown {row[column]}, before the fix "
                                f"{p_text(p_old)}, now {p_text(p_new)}")
    return problems


if __name__ == "__main__":
    found = [line for folder in sorted((ROOT / "docs" / "results").glob("*/")) if (folder / SWEEP_CSV).exists()
             for line in recheck(folder)]
    print("\n".join(found) or "every permutation p shown in docs/results is what both computations give")
