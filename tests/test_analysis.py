"""Analysis on a small real sweep made here: loaders against the records, report, notebooks, verdicts."""
import json
import math
import os
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, run_cli
from PIL import Image
from scipy import stats as st

from analysis import equivalence, load_curves, load_runs, paired_differences, summarize, verdicts
from analysis.load import SkippedRun
from analysis.report import main as report_main


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    base = tmp_path_factory.mktemp("analysis")
    sweep_dir = base / "sweep"
    proc = run_cli(["-m", "mixer=shift,attn", "seed=0,1", "train.epochs=2", "logger=none",
                    f"hydra.sweep.dir={sweep_dir}"], cwd=base)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sweep_dir


def test_load_runs_matches_the_records(sweep):
    runs = load_runs(sweep)
    assert len(runs) == 4
    for _, row in runs.iterrows():
        summary = json.loads((Path(row["run_dir"]) / "summary.json").read_text())
        assert row["val_top1"] == summary["val_top1"] and row["macs"] == summary["macs"]
        assert row["seed"] == summary["seed"] and row["mixer"] == summary["mixer"]
        assert row["depths"] == ",".join(map(str, summary["depths"]))
        assert row["macs_mlp"] == summary["macs_mlp"]
    shift = runs[runs["mixer"] == "shift"]
    assert set(shift["gamma"]) == {"1/12"} and np.allclose(shift["gamma_float"], 1 / 12)
    assert runs.loc[runs["mixer"] == "attn", "gamma"].isna().all()
    assert sorted(runs["seed"]) == [0, 0, 1, 1]
    for column in ("tau", "match", "model", "data", "norm", "act", "status", "best_val_top1", "ema_val_top1",
                   "params", "train_images_per_s", "eval_images_per_s", "wall_s"):
        assert column in runs


def test_load_curves_long_format(sweep):
    curves = load_curves(sweep)
    top1 = curves[curves["metric"] == "val_top1"]
    assert len(top1) == 4 * 2 and sorted(top1["epoch"].unique()) == [0, 1]
    for run_dir, group in top1.groupby("run_dir"):
        lines = [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
        assert group.sort_values("epoch")["value"].tolist() == [x["val_top1"] for x in lines]


def test_broken_run_dirs_are_skipped_with_a_warning(sweep, tmp_path):
    import shutil

    mixed = tmp_path / "mixed"
    shutil.copytree(sweep / "0", mixed / "good")
    (mixed / "corrupt").mkdir()
    (mixed / "corrupt" / "summary.json").write_text("{not json")
    (mixed / "corrupt" / "config.yaml").write_text("a: 1")
    shutil.copytree(sweep / "1", mixed / "running")
    summary = json.loads((mixed / "running" / "summary.json").read_text())
    (mixed / "running" / "summary.json").write_text(json.dumps({**summary, "status": "running"}))
    shutil.copytree(sweep / "2", mixed / "noconfig")
    (mixed / "noconfig" / "config.yaml").unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs = load_runs(mixed)
    assert len(runs) == 1
    messages = " ".join(str(w.message) for w in caught if issubclass(w.category, SkippedRun))
    for name, why in [("corrupt", "corrupt summary.json"), ("running", "still running"),
                      ("noconfig", "no config.yaml")]:
        assert str(mixed / name) in messages and why in messages
    assert len(runs.attrs["skipped"]) == 3


def _valid_image(path: Path) -> None:
    if path.suffix == ".png":
        with Image.open(path) as im:
            im.verify()
            assert im.size[0] > 100
    else:
        assert ET.parse(path).getroot().tag.endswith("svg")


def test_report_end_to_end(sweep, tmp_path):
    out = tmp_path / "report"
    assert report_main([str(sweep), "--out", str(out)]) == 0
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert "4 runs used, 0 skipped" in md and "## Verdicts: shift vs each mixer" in md
    assert "| shift | attn | 2 |" in md
    assert page.count("data:image/png;base64,") >= 5 and "<table" in page
    names = {"mixers", "acc_vs_macs", "acc_vs_speed", "curves_val_top1", "flop_breakdown"}
    for name in names:
        for ext in ("png", "svg"):
            _valid_image(out / f"{name}.{ext}")
            assert f"({name}.png)" in md
    assert report_main([str(tmp_path / "missing")]) == 2


@pytest.mark.parametrize("notebook", sorted((ROOT / "analysis" / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebooks_execute_headless(notebook, sweep, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("SHIFTVIT_SWEEP", str(sweep))
    monkeypatch.setenv("SHIFTVIT_FIGURES", str(tmp_path / "figures"))
    nb = nbformat.read(notebook, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("4 runs from" in o.get("text", "") for o in outputs)
    if notebook.stem in ("mixers", "gamma", "tau_depth"):
        assert any(p.suffix == ".png" for p in (tmp_path / "figures").iterdir())


def test_notebooks_are_what_build_py_generates(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_nb", ROOT / "analysis" / "notebooks" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "HERE", tmp_path)
    module.build()
    import nbformat

    built = sorted(tmp_path.glob("*.ipynb"))
    assert [p.name for p in built] == sorted(p.name for p in (ROOT / "analysis" / "notebooks").glob("*.ipynb"))
    for path in built:
        fresh, committed = (nbformat.read(p, as_version=4) for p in (path, ROOT / "analysis" / "notebooks" / path.name))
        assert [(c.cell_type, c.source) for c in fresh.cells] == [(c.cell_type, c.source) for c in committed.cells]


# --- statistics on constructed inputs ------------------------------------------------------------------------------
def test_summarize_ci_is_the_t_interval():
    import pandas as pd

    df = pd.DataFrame({"mixer": ["a"] * 3 + ["b"] * 2, "val_top1": [1.0, 2.0, 3.0, 5.0, 7.0]})
    table = summarize(df).set_index("mixer")
    half = st.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)
    assert table.loc["a", "mean"] == 2.0 and table.loc["a", "ci_low"] == pytest.approx(2 - half)
    assert table.loc["b", "n"] == 2
    assert table.loc["b", "ci_high"] == pytest.approx(6 + st.t.ppf(0.975, 1) * math.sqrt(2) / math.sqrt(2))


def test_verdict_equivalent():
    result = equivalence([0.1, -0.2, 0.15, 0.0, -0.05], "shift", "attn", margin=1.0)
    assert result.verdict == "equivalent" and result.p_tost < 0.05


def test_verdict_clearly_different_both_ways():
    assert equivalence([3.0, 2.5, 3.4, 2.8], "shift", "attn").verdict == "shift better"
    assert equivalence([-3.0, -2.5, -3.4, -2.8], "shift", "attn").verdict == "attention better"
    assert equivalence([-3.0, -2.5, -3.4], "shift", "dwconv").verdict == "depthwise conv better"


def test_verdict_too_few_seeds():
    one = equivalence([0.3], "shift", "attn")
    assert one.verdict.startswith("inconclusive - need more seeds") and "have 1" in one.verdict
    noisy = equivalence([2.0, -1.5, 0.8], "shift", "attn")
    assert noisy.verdict.startswith("inconclusive - need more seeds (about ")
    assert noisy.seeds_needed is not None and noisy.seeds_needed > 3


def test_paired_differences_pair_by_seed_and_verdict_table():
    import pandas as pd

    df = pd.DataFrame({"mixer": ["shift", "shift", "shift", "attn", "attn"], "seed": [0, 1, 2, 0, 2],
                       "val_top1": [90.0, 91.0, 92.0, 89.0, 91.5]})
    diffs = paired_differences(df, "shift", "attn")
    assert diffs["seed"].tolist() == [0, 2] and diffs["diff"].tolist() == [1.0, 0.5]
    table = verdicts(df)
    assert table["control"].tolist() == ["attn"] and table["n"].tolist() == [2]


def test_empty_sweep_report(tmp_path):
    (tmp_path / "empty").mkdir()
    assert report_main([str(tmp_path / "empty"), "--out", str(tmp_path / "r")]) == 0
    assert "No finished runs" in (tmp_path / "r" / "report.md").read_text()
    assert os.path.exists(tmp_path / "r" / "report.html")
