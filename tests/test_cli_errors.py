"""Bad command lines of analysis.report, shiftvit.bench and shiftvit.flops: one line `error: ...` naming the bad
value and the way out, exit code 2, no traceback, and nothing written."""
import subprocess
import sys
from pathlib import Path

import pytest
from analysis_records import testbed_cache, write_arm  # noqa: F401
from helpers import cli_env

from analysis import load_runs, verdicts
from analysis.load import METRICS
from analysis.report import main as report_main
from shiftvit.bench import main as bench_main
from shiftvit.flops import main as flops_main
from shiftvit.models.mixers import MIXERS


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    write_arm(root, "shift", [90.0, 91.0], mixer="shift")
    write_arm(root, "attn", [90.5, 91.5], mixer="attn")
    (root / "sweep.csv").write_text("job,val_top1\n")
    return root


def test_report_refuses_an_unknown_metric_naming_the_known_ones(sweep, tmp_path, capsys):
    out = tmp_path / "out"
    assert report_main([str(sweep), "--metric", "val_top", "--out", str(out)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "'val_top'" in line and all(metric in line for metric in METRICS)
    assert not out.exists()


@pytest.mark.parametrize("margin", ["-1", "0", "nan"])
def test_report_refuses_a_margin_that_is_not_positive_before_writing(sweep, tmp_path, capsys, margin):
    out = tmp_path / "out"
    assert report_main([str(sweep), "--margin", margin, "--out", str(out)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"--margin {float(margin):g}" in line and "--margin 1.0" in line
    assert not out.exists()
    with pytest.raises(ValueError, match=rf"^margin={float(margin):g} must be a positive"):  # the API checks it too
        verdicts(load_runs(sweep, warn=False), margin=float(margin))


@pytest.mark.parametrize("tolerance", ["2", "1", "-0.5", "0", "nan", "inf"])
def test_report_refuses_a_tolerance_that_is_not_a_fraction_before_writing(sweep, tmp_path, capsys, tolerance):
    """--tolerance 2 (a percentage typed for a fraction) would call arms +101 % apart budget-matched."""
    out = tmp_path / "out"
    assert report_main([str(sweep), "--tolerance", tolerance, "--out", str(out)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"--tolerance={float(tolerance)!r}" in line and not out.exists()
    assert ("--tolerance=0.02 for ±2%" in line) if float(tolerance) >= 1 else "must be > 0" in line
    assert report_main([str(sweep), "--tolerance", "0.05", "--out", str(out)]) == 0  # a fraction is taken
    with pytest.raises(ValueError, match=r"^tolerance=.* must be"):  # the API checks it too
        verdicts(load_runs(sweep, warn=False), tolerance=float(tolerance))


@pytest.mark.parametrize("kind", ["empty folder", "file", "missing"])
def test_report_refuses_a_path_without_run_records(sweep, tmp_path, capsys, kind):
    path = {"empty folder": tmp_path / "empty", "file": sweep / "sweep.csv", "missing": tmp_path / "nowhere"}[kind]
    if kind == "empty folder":
        path.mkdir()
    assert report_main([str(path)]) == 2  # the default output folder would be <path>/report
    line = _one_error_line(capsys.readouterr().err)
    assert str(path) in line and "run or sweep directory holding run records" in line
    assert (list(path.iterdir()) == [] if kind == "empty folder" else not (path / "report").exists())
    # the same path among good ones is refused too, and the good sweep gets nothing either
    assert report_main([str(sweep), str(path)]) == 2
    assert str(path) in _one_error_line(capsys.readouterr().err) and not (sweep / "report").exists()


def test_report_as_a_process_prints_one_line_and_exits_2(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = subprocess.run([sys.executable, "-m", "analysis.report", "empty"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env=cli_env(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert "empty holds no run records" in _one_error_line(proc.stderr)
    assert list((tmp_path / "empty").iterdir()) == []


@pytest.mark.usefixtures("testbed_cache")
def test_report_names_its_flag_when_the_baseline_matches_no_arm(sweep, tmp_path, capsys):
    out = tmp_path / "out"
    assert report_main([str(sweep), "--baseline", "mixer=pool", "--out", str(out)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "--baseline 'mixer=pool'" in line and "mixer=shift; mixer=attn" in line and "baseline=..." not in line
    assert not (out / "report.md").exists()
    assert report_main([str(sweep), "--baseline", "mixer=pool", "--treatment", "shift", "--out", str(out)]) == 2
    assert "--baseline 'mixer=pool' matches no arm" in _one_error_line(capsys.readouterr().err)


@pytest.mark.usefixtures("testbed_cache")
def test_report_without_the_default_baseline_says_which_flag_names_one(tmp_path, capsys):
    """Two knobs, no attn arm: no comparison, and the report says so in its own words (was stats' "name one with
    baseline=...." inside the report)."""
    sweep = tmp_path / "sweep"
    write_arm(sweep, "a", [90.0, 91.0], mixer="shift", gamma="1/12", lr=0.002)
    write_arm(sweep, "b", [90.5, 91.5], mixer="shift", gamma="1/6", lr=0.001)
    assert report_main([str(sweep), "--out", str(tmp_path / "r")]) == 0
    text = (tmp_path / "r" / "report.md").read_text()
    assert "no arm matches the default baseline (mixer=attn)" in text and "--baseline" in text
    assert "To compare, name the baseline arm with --baseline, one of: 'mixer=shift gamma=1/12 lr=0.002'; " \
        "'mixer=shift gamma=1/6 lr=0.001'" \
        in text and "baseline=..." not in text
    one = tmp_path / "one"  # one arm: no flag makes a comparison, and the report does not send the reader to one
    write_arm(one, "a", [90.0, 91.0], mixer="shift")
    assert report_main([str(one), "--out", str(tmp_path / "r1")]) == 0
    one_arm = (tmp_path / "r1" / "report.md").read_text()
    assert "No comparison: no arm matches the default baseline (mixer=attn), and the runs are one arm, with nothing " \
        "to compare it with. A sweep over a knob (mixer=shift,attn) gives arms." in one_arm
    assert "--baseline" not in one_arm
    # asked for one arm's comparison, it is an error instead, naming the flag
    assert report_main([str(sweep), "--treatment", "gamma=1/6", "--out", str(tmp_path / "r2")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "the default baseline 'mixer=attn' matches no arm" in line and "with --baseline" in line
    assert not (tmp_path / "r2" / "report.md").exists()


@pytest.mark.parametrize("spec, named", [
    ("shiftvit_nan", ["'shiftvit_nan'", "shiftvit_nano", "shiftvit_r2_tiny", "timm.list_models()"]),
    ("shiftvit_nano[atn]", ["'atn'", *MIXERS]),
    ("resnet18[attn]", ["ShiftViT model only", "shiftvit_nano"]),
    ("shiftvit_nano[attn", ["NAME[MIXER]"]),
])
def test_bench_throughput_refuses_an_unknown_model_or_mixer_naming_the_choices(tmp_path, capsys, spec, named):
    out = tmp_path / "throughput.json"
    assert bench_main(["throughput", "shiftvit_nano", spec, "--quick", "--device", "cpu", "--out", str(out)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert all(word in line for word in named), line
    assert not out.exists()


def test_bench_throughput_checks_every_model_before_building_one():
    from shiftvit.bench import bench_throughput

    with pytest.raises(ValueError, match=r"model 'shiftvit_nano\[atn\]': unknown mixer 'atn'; choose one of"):
        bench_throughput(["shiftvit_nano", "shiftvit_nano[atn]"], batch_size=1, img_size=32, device="cpu")


def test_bench_refuses_a_model_name_for_the_other_benchmarks(capsys):
    assert bench_main(["solver", "--reference", "shiftvit_nan", "--out", ""]) == 2
    assert "unknown model 'shiftvit_nan'" in _one_error_line(capsys.readouterr().err)
    assert bench_main(["fast", "--model", "shiftvit_nano[attn]", "--device", "cpu", "--out", ""]) == 2
    assert "is not a timm model name" in _one_error_line(capsys.readouterr().err)


def test_bench_refuses_cuda_without_a_gpu(tmp_path):
    """A machine without a GPU, as CUDA_VISIBLE_DEVICES='' makes any machine look to torch."""
    out = tmp_path / "shift.json"
    proc = subprocess.run([sys.executable, "-m", "shiftvit.bench", "shift", "--quick", "--device", "cuda",
                           "--out", str(out)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=cli_env(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert _one_error_line(proc.stderr) == "error: --device cuda: no CUDA device here; use --device cpu"
    assert not out.exists()


def test_bench_refuses_a_device_torch_cannot_parse(capsys):
    assert bench_main(["norm", "--quick", "--device", "gpu", "--out", ""]) == 2
    assert "--device 'gpu' is not a device" in _one_error_line(capsys.readouterr().err)


def test_flops_variants_needs_no_model(capsys):
    assert flops_main(["--variants"]) == 0
    listing = capsys.readouterr().out
    assert "shiftvit_r2_tiny" in listing and listing.rstrip().splitlines()[-1].startswith("aliases:")
    assert flops_main(["--variants", "-"]) == 0  # the README's older form still works
    assert capsys.readouterr().out == listing


def test_flops_without_a_model_points_to_both_forms(capsys):
    assert flops_main([]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "python -m shiftvit.flops shiftvit_r2_tiny" in line and "python -m shiftvit.flops --variants" in line


@pytest.mark.usefixtures("testbed_cache")
def test_report_names_the_arms_a_baseline_filter_cannot_choose_between(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    write_arm(sweep, "a", [90.0, 91.0], mixer="shift", gamma="1/12")
    write_arm(sweep, "b", [90.5, 91.5], mixer="shift", gamma="1/6")
    write_arm(sweep, "c", [89.0, 90.0], mixer="attn")
    out = tmp_path / "out"
    assert report_main([str(sweep), "--baseline", "shift", "--out", str(out)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "matches 2 arms equally near the arm mixer=attn" in line and "e.g. 'mixer=shift gamma=1/12'" in line
    assert not (out / "report.md").exists()
    assert report_main([str(sweep), "--baseline", "mixer=shift gamma=1/12", "--out", str(out)]) == 0  # the way out
