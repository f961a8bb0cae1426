"""Analysis on a small real sweep made here (the README's first command, one epoch): loaders against the records,
the report, broken records, notebooks."""
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from analysis_records import testbed_cache, write_run  # noqa: F401
from helpers import AS_NOBODY, ROOT, cli_env, nobody_cannot_run_checkout, run_cli
from PIL import Image

from analysis import load_curves, load_runs, summarize, verdicts
from analysis.load import SkippedRun
from analysis.report import main as report_main
from shiftvit.records import ARCHIVE_DIR, CHECKPOINT_FILE, LOCK_FILE, METRICS_FILE

pytestmark = pytest.mark.usefixtures("testbed_cache")
# the headline line with match=none on the small model: the report must flag the arms it cannot compare
HEADLINE = ["-m", "mixer=shift,attn", "gamma=1/12,1/6", "model=shiftvit_nano", "match=none", "train.epochs=1",
            "logger=none"]
ARMS = {"mixer=shift gamma=1/12", "mixer=shift gamma=1/6", "mixer=attn"}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """``python run.py -m mixer=shift,attn gamma=1/12,1/6 train.epochs=1 logger=none``: 4 jobs, of which the
    two attn jobs share one effective config (γ does not apply to attn), so the second is a duplicate."""
    base = tmp_path_factory.mktemp("analysis")
    sweep_dir = base / "sweep"
    proc = run_cli([*HEADLINE, f"hydra.sweep.dir={sweep_dir}"], cwd=base)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sweep_dir


def test_load_runs_matches_the_records(sweep):
    with pytest.warns(SkippedRun, match="duplicate of"):
        runs = load_runs(sweep)
    assert len(runs) == 3 and set(runs["arm"]) == ARMS
    assert runs.attrs["arm_columns"] == ["mixer", "gamma"]
    for _, row in runs.iterrows():
        summary = json.loads((Path(row["run_dir"]) / "summary.json").read_text())
        assert row["val_top1"] == summary["val_top1"] and row["macs"] == summary["macs"]
        assert row["seed"] == summary["seed"] and row["mixer"] == summary["mixer"]
        assert row["depths"] == ",".join(map(str, summary["depths"])) and row["macs_mlp"] == summary["macs_mlp"]
        assert row["val_images"] == 360 and row["val_top1_se"] > 0
    assert runs.loc[runs["mixer"] == "attn", "gamma"].isna().all()


def test_duplicates_are_one_warning_and_each_listed(tmp_path):
    """Seeds added to a one-seed sweep leave a duplicate per seed-0 job (its folder named with seed=0): listed in
    df.attrs['skipped'] one by one, but one warning for them all, not one per job at every load."""
    import warnings


    sweep = tmp_path / "sweep"
    for seed in range(3):
        write_run(sweep, f"job{seed}", seed=seed)
        duplicate = write_run(sweep, f"job{seed},seed={seed}", seed=seed)
        summary = json.loads((duplicate / "summary.json").read_text())
        (duplicate / "summary.json").write_text(json.dumps({**summary, "status": "duplicate",
                                                            "duplicate_of": str(sweep / f"job{seed}")}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs = load_runs(sweep)
    [warning] = [str(w.message) for w in caught if issubclass(w.category, SkippedRun)]
    assert warning.startswith("skipped 3 duplicate records, each the same config and seed as another record")
    assert len(runs) == 3 and sorted(why for _, why in runs.attrs["skipped"]) == [
        f"duplicate of {sweep / f'job{seed}'} (the same run twice)" for seed in range(3)]


def test_load_curves_long_format(sweep):
    curves = load_curves(sweep, warn=False)
    top1 = curves[curves["metric"] == "val_top1"]
    assert len(top1) == 3 and set(top1["epoch"]) == {1} and set(top1["arm"]) == ARMS
    for run_dir, group in top1.groupby("run_dir"):
        lines = [json.loads(x) for x in (Path(run_dir) / METRICS_FILE).read_text().splitlines()]
        assert group["value"].tolist() == [x["val_top1"] for x in lines]
    assert curves.attrs["curve_problems"] == []


def test_headline_report_three_arms_no_pooling_and_the_budget_flag(sweep, tmp_path):
    out = tmp_path / "report"
    assert report_main([str(sweep), "--out", str(out)]) == 0
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert "3 runs loaded (3 completed) in 3 arms; 1 record skipped" in md
    arm_rows = [line for line in md.splitlines() if line.startswith("| mixer=") and "| 1 of 1 |" in line]
    assert {row.split(" | ")[0].lstrip("| ") for row in arm_rows} == ARMS  # one run per arm: nothing pooled
    assert md.count("−47 % MACs ⚠ not budget-matched") == 2  # attn costs 14.79 M MACs, shift 7.90 M
    # why no test, and the way out, beside the budget flag
    assert md.count("insufficient data (1 and 1 finished runs; a test needs 2 or more in each arm: add seeds to the "
                    "sweep (seed=0,1,2)); not budget-matched (−47 % MACs)") == 2
    assert "digits: 360 validation images (1437 train), 10 classes; chance 10.0 %" in md
    assert page.count("data:image/png;base64,") >= 5 and "<table" in page
    for name in ("arms", "gamma", "acc_vs_macs", "acc_vs_speed", "curves_val_top1", "macs_breakdown"):
        assert f"({name}.png)" in md
        with Image.open(out / f"{name}.png") as im:
            im.verify()
        assert ET.parse(out / f"{name}.svg").getroot().tag.endswith("svg")
    table = verdicts(load_runs(sweep, warn=False))
    assert set(table["treatment"]) == ARMS - {"mixer=attn"} and set(table["baseline"]) == {"mixer=attn"}
    assert report_main([str(tmp_path / "missing")]) == 2


def test_report_on_a_read_only_sweep_says_where_to_write(sweep):
    """Root ignores permissions: the report then runs as nobody, as a colleague reading the sweep would."""
    shared, home = Path(tempfile.mkdtemp(prefix="shiftvit-ro-")), Path(tempfile.mkdtemp(prefix="shiftvit-home-"))
    home.chmod(0o777)  # the reader's own home, writable to them
    try:
        copy = shared / "sweep"
        shutil.copytree(sweep, copy, ignore=shutil.ignore_patterns(LOCK_FILE))
        for path in [shared, *copy.rglob("*"), copy]:
            path.chmod(0o555 if path.is_dir() else 0o444)
        command = [sys.executable, "-m", "analysis.report", str(copy)]
        if os.geteuid() == 0:
            problem = nobody_cannot_run_checkout()
            if problem:
                pytest.skip(problem)
            command = [*AS_NOBODY, *command]
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120,
                              env=cli_env(HOME=str(home)))
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and str(copy / "report") in lines[0] and "--out DIR" in lines[0], proc.stderr
        assert not (copy / "report").exists()
    finally:
        for path in [shared, *shared.rglob("*")]:
            path.chmod(0o755)
        shutil.rmtree(shared)
        shutil.rmtree(home)


def test_broken_and_archived_records(sweep, tmp_path):
    loaded = load_runs(sweep, warn=False)  # job directories by arm, whatever names the sweep gave them
    by_arm = dict(zip(loaded["arm"], loaded["run_dir"].map(Path)))
    mixed = tmp_path / "mixed"
    shutil.copytree(by_arm["mixer=shift gamma=1/12"], mixed / "good")
    shutil.copytree(by_arm["mixer=shift gamma=1/12"], mixed / "good" / ARCHIVE_DIR / "old")  # never a run
    (mixed / "corrupt").mkdir()
    (mixed / "corrupt" / "summary.json").write_text("{not json")
    (mixed / "corrupt" / "config.yaml").write_text("a: 1")
    for name, source in (("live", "mixer=shift gamma=1/6"), ("dead", "mixer=shift gamma=1/6"),
                         ("noconfig", "mixer=attn"), ("truncated", "mixer=attn")):
        shutil.copytree(by_arm[source], mixed / name)
    for name in ("live", "dead"):
        summary = json.loads((mixed / name / "summary.json").read_text())
        (mixed / name / "summary.json").write_text(json.dumps({**summary, "status": "running"}))
    (mixed / "noconfig" / "config.yaml").unlink()
    metrics = mixed / "truncated" / METRICS_FILE
    metrics.write_text(metrics.read_text() + '{"epoch": 1, "val_top1": 9')  # a second epoch cut off mid-line
    with open(mixed / "live" / LOCK_FILE, "w") as lock:  # a live process holds the lock of 'live'
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.warns(SkippedRun) as caught:
            runs = load_runs(mixed)
        curves = load_curves(mixed, warn=False, runs=runs)
        out = tmp_path / "report"
        assert report_main([str(mixed), "--out", str(out)]) == 0
    messages = " ".join(str(w.message) for w in caught)
    for name, why in [("corrupt", "corrupt summary.json"), ("noconfig", "no config.yaml")]:
        assert str(mixed / name) in messages and why in messages
    assert len(runs.attrs["skipped"]) == 2 and ARCHIVE_DIR not in messages
    # the live run is a seed of its arm still training; the dead one an interrupted attempt at that seed
    assert sorted(Path(d).name for d in runs["run_dir"]) == ["dead", "good", "live", "truncated"]
    status = runs.set_index(runs["run_dir"].map(lambda d: Path(d).name))["status"]
    assert (status["dead"], status["live"]) == ("interrupted", "running")
    assert not any(ARCHIVE_DIR in d for d in runs["run_dir"])
    assert curves.attrs["curve_problems"] == [(str(mixed / "truncated"),
                                               "truncated metrics.jsonl (last line cut off; kept 1 epochs)")]
    assert len(curves[(curves["run_dir"] == str(mixed / "truncated")) & (curves["metric"] == "val_top1")]) == 1
    md = (out / "report.md").read_text()
    assert "1 run with unreadable or truncated curves" in md and "truncated metrics.jsonl (last line cut off" in md
    # the seed is still training (its attempt that died is an earlier one): said before any number, and counted
    assert "Running: 1 run still training, in no mean or test yet" in md and str(mixed / "live") in md
    assert "| mixer=shift gamma=1/6 | 0 of 1 (2 runs), 1 running |" in md
    arm = summarize(runs).set_index("arm").loc["mixer=shift gamma=1/6"]
    assert (arm["n"], arm["running"], arm["failures"]) == (0, 1, "")


@pytest.mark.parametrize("notebook", sorted((ROOT / "analysis" / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebooks_execute_headless(notebook, sweep, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    sys.path.insert(0, str(ROOT / "analysis" / "notebooks"))
    try:
        from build import inject_parameters
    finally:
        sys.path.pop(0)
    nb = inject_parameters(nbformat.read(notebook, as_version=4), SWEEPS=[str(sweep)],
                           FIGURES=str(tmp_path / "figures"))
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("3 runs in 3 arms from" in o.get("text", "") for o in outputs)
    if notebook.stem in ("mixers", "gamma", "tau_depth"):
        assert any(p.suffix == ".png" for p in (tmp_path / "figures").iterdir())


def test_notebook_run_as_a_user_runs_it_writes_beside_the_report(sweep, tmp_path):
    """The README's command from the repository root, with the dev extras' jupyter: the notebook unedited, the
    sweep named relative to the root in $SHIFTVIT_SWEEPS. The kernel starts in analysis/notebooks/, as under
    jupyter lab; nothing may land there, and the figures go where the README says."""
    copy = tmp_path / "sweep"  # a copy without checkpoints, so that the shared sweep keeps no report of ours
    shutil.copytree(sweep, copy, ignore=shutil.ignore_patterns(CHECKPOINT_FILE, LOCK_FILE))
    notebooks = ROOT / "analysis" / "notebooks"
    # __pycache__ holds bytecode of build.py, written by whichever test imports it, not by a notebook
    before = {p for p in notebooks.rglob("*") if "__pycache__" not in p.parts}
    proc = subprocess.run([str(Path(sys.executable).parent / "jupyter"), "nbconvert", "--to", "notebook", "--execute",
                           "analysis/notebooks/mixers.ipynb", "--output", str(tmp_path / "executed")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=cli_env(SHIFTVIT_SWEEPS=os.path.relpath(copy, ROOT)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {p for p in notebooks.rglob("*") if "__pycache__" not in p.parts} == before
    assert "`<first sweep>/report/<notebook>/`" in (ROOT / "README.md").read_text()
    figures = copy / "report" / "mixers"
    for name in ("arms", "acc_vs_macs", "acc_vs_speed", "macs_breakdown", "curves_val_top1"):
        with Image.open(figures / f"{name}.png") as im:
            im.verify()
    import nbformat

    executed = nbformat.read(tmp_path / "executed.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "3 runs in 3 arms from" in text and f"figures go to {figures.resolve()}" in text


def test_notebook_without_sweeps_says_so(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    monkeypatch.delenv("SHIFTVIT_SWEEPS", raising=False)  # the kernel inherits it, and would read it
    nb = nbformat.read(ROOT / "analysis" / "notebooks" / "norm_act.ipynb", as_version=4)
    with pytest.raises(CellExecutionError, match="set SWEEPS in the parameters cell"):
        NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
                       ).execute()


def test_notebooks_are_what_build_py_generates(tmp_path, monkeypatch):
    import importlib.util

    import nbformat

    spec = importlib.util.spec_from_file_location("build_nb", ROOT / "analysis" / "notebooks" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "HERE", tmp_path)
    module.build()
    built = sorted(tmp_path.glob("*.ipynb"))
    assert [p.name for p in built] == sorted(p.name for p in (ROOT / "analysis" / "notebooks").glob("*.ipynb"))
    for path in built:
        fresh, committed = (nbformat.read(p, as_version=4) for p in (path, ROOT / "analysis" / "notebooks" / path.name))
        assert [(c.cell_type, c.source, c.metadata.get("tags")) for c in fresh.cells] == \
            [(c.cell_type, c.source, c.metadata.get("tags")) for c in committed.cells]


def test_empty_sweep_report(tmp_path):
    """A sweep whose every record is unusable still gets a report (that is information); a folder with no run
    records at all is refused (tests/test_cli_errors.py)."""

    run_dir = write_run(tmp_path / "sweep", "job-0")
    (run_dir / "summary.json").write_text("{")  # damaged
    (run_dir / "config.yaml").write_text("[")
    assert report_main([str(tmp_path / "sweep"), "--out", str(tmp_path / "r")]) == 0
    text = (tmp_path / "r" / "report.md").read_text()
    assert "No finished runs" in text and "corrupt summary.json" in text
    assert (tmp_path / "r" / "report.html").exists()


def test_a_record_whose_summary_is_damaged_is_a_seed_of_its_arm_without_a_result(tmp_path):
    """A damaged summary.json whose config.yaml still says what ran: the seed counts against its arm (not "1 of 1"
    and "add seeds"), the report names the record and the way out, and sweep.csv says unreadable, not queued."""

    from shiftvit.multirun import job_row, job_status

    sweep = tmp_path / "sweep"
    for seed in (0, 1, 2):
        write_run(sweep, f"shift{seed}", seed=seed, val_top1=90.0 + seed)
        write_run(sweep, f"attn{seed}", mixer="attn", seed=seed, val_top1=85.0 + seed)
    damaged = sweep / "shift2" / "summary.json"
    damaged.write_text(damaged.read_text()[:40])
    runs = load_runs(sweep, warn=False)
    arms = summarize(runs).set_index("arm")
    assert (arms.loc["mixer=shift", "seeds"], arms.loc["mixer=shift", "n"]) == (3, 2)
    assert arms.loc["mixer=shift", "failures"] == "1 of 3 seeds unreadable" and not runs.attrs["skipped"]
    assert report_main([str(sweep), "--out", str(tmp_path / "r")]) == 0
    text = (tmp_path / "r" / "report.md").read_text()
    assert "Unreadable: 1 record whose summary.json cannot be read" in text
    assert f"{sweep / 'shift2'} (mixer=shift: corrupt summary.json" in text and "train.resume=fresh" in text
    assert "| mixer=shift | 2 of 3 | 1 of 3 seeds unreadable |" in text
    assert job_row(sweep / "shift2")["status"] == "unreadable"
    assert job_status(sweep / "shift2").startswith(f"unreadable: {damaged} cannot be read")
    # the same seed finished in another sweep: this record is a superseded attempt, not a missing seed
    write_run(tmp_path / "again", "shift2", seed=2, val_top1=92.0)
    runs = load_runs([sweep, tmp_path / "again"], warn=False)
    assert summarize(runs).set_index("arm").loc["mixer=shift", "failures"] == ""
    assert [why for _, why in runs.attrs["skipped"]] == [
        f"unreadable attempt superseded by {tmp_path / 'again' / 'shift2'} (the same config and seed, completed)"]


def test_a_cut_off_seed_on_one_data_set_is_not_superseded_by_that_seed_on_another(tmp_path):
    """Two sweeps of one config on two folders of one format (two data sets, reported together): the config hash
    leaves out where the data lies, so a seed cut off on one was read as superseded by the same seed finished on
    the other, and vanished from its arm. Only a finish on the same data (its fingerprint) supersedes."""
    for seed in (0, 1):
        write_run(tmp_path / "A", f"shift{seed}", seed=seed, val_top1=90.0 + seed, data_fingerprint="a" * 16)
    write_run(tmp_path / "B", "shift0", seed=0, val_top1=80.0, data_fingerprint="b" * 16)
    write_run(tmp_path / "B", "shift1", seed=1, val_top1=None, status="interrupted", data_fingerprint="b" * 16)
    runs = load_runs([tmp_path / "A", tmp_path / "B"], warn=False)
    assert not runs.attrs["skipped"] and len(runs) == 4
    on_b = summarize(runs).set_index("n").loc[1]
    assert (on_b["seeds"], on_b["failures"]) == (2, "1 of 2 seeds interrupted")
    write_run(tmp_path / "B2", "shift1", seed=1, val_top1=81.0, data_fingerprint="b" * 16)  # finished on B: it does
    runs = load_runs([tmp_path / "A", tmp_path / "B", tmp_path / "B2"], warn=False)
    assert [why for _, why in runs.attrs["skipped"]] == [
        f"interrupted attempt superseded by {tmp_path / 'B2' / 'shift1'} (the same config and seed, completed)"]
    # so does a finish recorded before fingerprints were kept, which says nothing against the same data
    write_run(tmp_path / "older", "shift1", seed=1, val_top1=81.0)
    runs = load_runs([tmp_path / "B", tmp_path / "older"], warn=False)
    assert [why for _, why in runs.attrs["skipped"]] == [
        f"interrupted attempt superseded by {tmp_path / 'older' / 'shift1'} (the same config and seed, completed)"]


def test_every_registered_mixer_has_its_name_and_colour_in_the_figures():
    from analysis.arms import MIXER_STYLE
    from analysis.plots import mixer_color
    from shiftvit.models.mixers import MIXERS

    assert set(MIXER_STYLE) == set(MIXERS)
    colours = [mixer_color(m) for m in MIXER_STYLE]
    assert len(set(colours)) == len(colours)  # no two mixers share a colour


def test_a_record_from_before_a_key_shares_the_arm_of_that_key_at_its_old_value():
    """data.augment came after CIFAR records existed: one without it and one with timm (what it ran) are one arm,
    as their config hashes are equal; crop_flip is another."""
    from analysis.arms import assign_arms

    older = {"mixer.name": "shift", "data.name": "cifar10", "seed": 0}
    newer = {**older, "data.augment": "timm", "data.padding": 4, "seed": 1}
    crop_flip = {**older, "data.augment": "crop_flip", "data.padding": 4}
    rows = [{}, {}, {}]
    columns = assign_arms(rows, [older, newer, crop_flip])
    assert rows[0]["arm"] == rows[1]["arm"] == "data.augment=timm"  # what the older record ran, not a null
    assert rows[2]["arm"] == "data.augment=crop_flip"
    # the columns say what the labels say: the table, the recipe check and the filters read them
    assert columns == ["data.augment"] and [r["data.augment"] for r in rows] == ["timm", "timm", "crop_flip"]


def test_where_the_data_lies_is_no_arm_but_other_data_is(tmp_path):
    """One config whose seeds read the same CIFAR from two disks is one arm on one testbed (built from whichever
    place still holds the data). Runs of one data config that read different data (their fingerprints) share no
    arm, testbed or comparison; a run recorded before fingerprints among them is set apart too."""

    from analysis.headroom import testbeds_of
    from shiftvit.bench.loader import write_cifar
    from shiftvit.data import build_data
    from shiftvit.records import UNRECORDED_DATA

    gone, scratch, other = tmp_path / "data" / "cifar", tmp_path / "scratch" / "cifar", tmp_path / "other"
    write_cifar(scratch, num_train=40, num_val=20)
    write_cifar(other, num_train=40, num_val=10, seed=1)
    fp_a, fp_b = (build_data("cifar10", root=str(root)).fingerprint for root in (scratch, other))
    sweep = tmp_path / "sweep"

    def cifar(root: Path) -> dict:
        return {"name": "cifar10", "root": str(root)}

    write_run(sweep, "a0", seed=0, data=cifar(gone), data_fingerprint=fp_a)  # a disk no longer there
    write_run(sweep, "a1", seed=1, data=cifar(scratch), data_fingerprint=fp_a)
    write_run(sweep, "attn0", mixer="attn", data=cifar(gone), data_fingerprint=fp_a)
    runs = load_runs(sweep)
    assert set(runs["arm"]) == {"mixer=shift", "mixer=attn"}
    assert list(runs.loc[runs["mixer"] == "shift", "seed"]) == [0, 1]
    assert "data.root" not in runs.attrs["arm_columns"]
    [bed] = testbeds_of(runs).values()
    assert bed.val_images == 20 and bed.nearest_neighbour is not None  # built from the scratch copy
    assert list(runs["val_images"]) == [20] * 3

    write_run(sweep, "b2", seed=2, data=cifar(other), data_fingerprint=fp_b)  # other images, one data config
    write_run(sweep, "attn1", mixer="attn", seed=1, data=cifar(other), data_fingerprint=fp_b)
    write_run(sweep, "old3", seed=3, data=cifar(gone))  # recorded before the fingerprint
    runs = load_runs(sweep)
    arms = runs.set_index("job")["arm"].to_dict()
    assert arms == {"a0": f"mixer=shift data_fingerprint={fp_a}", "a1": f"mixer=shift data_fingerprint={fp_a}",
                    "b2": f"mixer=shift data_fingerprint={fp_b}",
                    "old3": f"mixer=shift data_fingerprint={UNRECORDED_DATA}",
                    "attn0": f"mixer=attn data_fingerprint={fp_a}", "attn1": f"mixer=attn data_fingerprint={fp_b}"}
    beds = testbeds_of(runs)
    assert len(beds) == 3 and sorted(bed.val_images or 0 for bed in beds.values()) == [0, 10, 20]
    table = verdicts(runs, baseline="mixer=attn", margin=1.0)
    pairs = set(zip(table["treatment"], table["baseline"]))
    assert pairs == {(arms["a0"], arms["attn0"]), (arms["b2"], arms["attn1"])}  # each on its own data


def test_a_testbed_is_cached_by_the_data_its_runs_read_not_by_the_config(tmp_path):
    """Two sweeps of one data config that read different data (two CIFAR folders), reported one after the other
    with one testbed cache: each gets the testbed of its own data, not the first one's cached numbers (which once
    flipped a verdict). Records made before fingerprints are told apart by where their data lay."""

    from analysis.headroom import testbeds_of
    from shiftvit.bench.loader import write_cifar
    from shiftvit.data import build_data

    roots = {"a": tmp_path / "a", "b": tmp_path / "b"}
    write_cifar(roots["a"], num_train=40, num_val=20)
    write_cifar(roots["b"], num_train=40, num_val=10, seed=1)
    fingerprints = {k: build_data("cifar10", root=str(root)).fingerprint for k, root in roots.items()}
    for recorded in (True, False):
        beds = {}
        for k, root in roots.items():
            sweep = tmp_path / f"sweep_{k}_{recorded}"
            write_run(sweep, "s0", data={"name": "cifar10", "root": str(root)},
                      data_fingerprint=fingerprints[k] if recorded else None)
            runs = load_runs(sweep)
            [beds[k]] = testbeds_of(runs).values()
            assert list(runs["val_images"]) == [beds[k].val_images]
        assert (beds["a"].val_images, beds["b"].val_images) == (20, 10), recorded
        assert beds["a"].nearest_neighbour is not None and beds["b"].nearest_neighbour is not None


def test_arms_told_apart_by_a_null_say_so_in_their_labels():
    """Two arms of one mixer whose only difference is a key one of them leaves null: the labels must name that
    key on both sides (never "all runs", which reads as if every run were one arm)."""
    from analysis.arms import assign_arms

    plain = {"mixer.name": "shift", "train.clip_grad": None, "seed": 0}
    clipped = {**plain, "train.clip_grad": 1.0}
    rows = [{}, {}, {}]
    assign_arms(rows, [plain, clipped, {**plain, "seed": 1}])
    assert [r["arm"] for r in rows] == ["mixer=shift train.clip_grad=null", "mixer=shift train.clip_grad=1.0",
                                        "mixer=shift train.clip_grad=null"]


def test_an_arm_of_records_from_before_a_training_setting_is_labelled_with_the_value_they_ran_at():
    """Records from before world_size (or train.aug_repeats) lack the key: they ran at one process (no repeats),
    and their arm says so in its label and columns, where a null would read as a setting of its own and a filter
    naming the value would find nothing."""
    import pandas as pd

    from analysis.arms import arms_matching, assign_arms
    from analysis.stats import recipe_difference

    older = [{"mixer.name": "attn", "seed": seed} for seed in (0, 1)]
    newer = [{"mixer.name": "shift", "seed": seed, "world_size": 2, "train.aug_repeats": 3} for seed in (0, 1)]
    rows = [{"seed": config["seed"]} for config in (*older, *newer)]
    columns = assign_arms(rows, [dict(config) for config in (*older, *newer)])
    runs = pd.DataFrame(rows)
    runs.attrs["arm_columns"] = columns
    assert list(dict.fromkeys(runs["arm"])) == ["mixer=attn train.aug_repeats=0 world_size=1",
                                                "mixer=shift train.aug_repeats=3 world_size=2"]
    assert arms_matching(runs, "mixer=attn world_size=1") == ["mixer=attn train.aug_repeats=0 world_size=1"]
    assert recipe_difference(runs, *runs["arm"].unique()[::-1]) == "train.aug_repeats 3 vs 0, world_size 2 vs 1"


def test_trained_code_counts_the_attempts_that_trained():
    """An attempt trained when the next one resumed from a later point (mid-epoch too); one that stopped before it
    started (no position) or that the next resumed from the same point trained nothing; the last one counts."""
    from shiftvit.records import trained_code

    def attempt(commit, resumed_at, dirty=False):
        return {"git_commit": commit * 40, "git_dirty": dirty, "versions": {}, "resumed_at": resumed_at}

    assert trained_code({"attempts_code": [attempt("a", [0, 0]), attempt("b", [3, 0])]}) == ["aaaaaaa", "bbbbbbb"]
    # a SIGTERM inside epoch 3: the next attempt resumed mid-epoch, so the first trained part of it
    assert trained_code({"attempts_code": [attempt("a", [2, 0]), attempt("b", [2, 5])]}) == ["aaaaaaa", "bbbbbbb"]
    # stopped before its first step (the next resumed where it started), or before it had a position
    assert trained_code({"attempts_code": [attempt("a", [2, 0]), attempt("b", [2, 0])]}) == ["bbbbbbb"]
    assert trained_code({"attempts_code": [attempt("a", None), attempt("b", [0, 0])]}) == ["bbbbbbb"]
    assert trained_code({"attempts_code": [attempt("a", [0, 0]), attempt("a", [1, 0], dirty=True)]}) == [
        "aaaaaaa", "aaaaaaa with uncommitted changes"]
    # a record from before the list: its one commit
    assert trained_code({"git_commit": "c" * 40, "git_dirty": False}) == ["ccccccc"]
    assert trained_code({"git_commit": None}) == ["no git commit"]


def test_trained_machines_counts_the_attempts_that_trained():
    """As for the code: the machines of the attempts that trained, each once; records from before the key name
    none, an attempt from before it says so."""
    from shiftvit.records import trained_machines

    epyc = {"cpu": "AMD EPYC", "cpu_capability": "AVX512", "gpu": None}
    xeon = {"cpu": "Intel Xeon", "cpu_capability": "AVX2", "gpu": "NVIDIA H200"}

    def attempt(machine, resumed_at):
        return {"git_commit": "a" * 40, "git_dirty": False, "versions": {}, "machine": machine,
                "resumed_at": resumed_at}

    assert trained_machines({"attempts_code": [attempt(epyc, [0, 0]), attempt(xeon, [3, 0])]}) == [
        "AMD EPYC (AVX512)", "Intel Xeon (AVX2), NVIDIA H200"]
    assert trained_machines({"attempts_code": [attempt(epyc, [2, 0]), attempt(xeon, [2, 0])]}) == [
        "Intel Xeon (AVX2), NVIDIA H200"]  # the first stopped before its first step
    assert trained_machines({"attempts_code": [attempt(None, [0, 0]), attempt(epyc, [1, 0])]}) == [
        "machine not recorded", "AMD EPYC (AVX512)"]  # resumed after an upgrade
    assert trained_machines({"attempts_code": [attempt(None, [0, 0])]}) == []
    assert trained_machines({"git_commit": "c" * 40}) == []
    assert trained_machines({"machine": epyc}) == ["AMD EPYC (AVX512)"]


def test_machine_names_the_gpu_of_the_device_only():
    """A run on the CPU names no GPU, even on a machine that has one: the record says what trained it."""
    import torch

    from shiftvit.devices import machine

    assert machine()["gpu"] is None and machine(torch.device("cpu"))["gpu"] is None
    assert machine(torch.device("cpu"))["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    if torch.cuda.is_available():
        assert machine(torch.device("cuda", 0))["gpu"] == torch.cuda.get_device_name(0)


def test_a_record_that_trained_no_epoch_is_not_said_to_predate_the_machine_key():
    """A run refused by its machine or stopped by a failed download names no machine because it trained no
    epoch; only a record that trained and names none was written before the key."""
    import pandas as pd

    from analysis.report import machine_paragraph

    runs = pd.DataFrame({"job": ["a", "b", "c", "d"], "machine": ["cpu X", "", "", ""],
                         "epochs_done": [3, 0, float("nan"), 5]})
    assert machine_paragraph(runs) == ("Machines, as each record names it: cpu X (1 run). 1 record names none "
                                       "(written before the key). 2 records name none (trained no epoch).")
