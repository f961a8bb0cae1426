import json

import pytest
import torch

from shiftvit.bench import main


def test_shift_bench_quick_writes_ratios(tmp_path, capsys):
    out = tmp_path / "shift.json"
    assert main(["shift", "--quick", "--device", "cpu", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["ratio_to_clone"]) == {"clone", "clone_autograd", "shiftvit", "official", "write_once",
                                             "few_launches"}
    assert result["malloc"] == "retain" and result["device"].startswith("cpu")
    assert result["ratio_to_clone"]["clone"] == 1.0 and result["ratio_to_autograd_clone"]["clone_autograd"] == 1.0
    assert result["dtype"] == "float32"
    assert all(v > 0 for v in result["median_ms"].values())
    assert "x clone (median)" in capsys.readouterr().out


def test_norm_bench_quick_times_every_layout_and_autocast(tmp_path, capsys):
    out = tmp_path / "norm.json"
    assert main(["norm", "--quick", "--device", "cpu", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["ratio_to_clone"]
    # under autocast, both inputs a block's norm meets: float32 (stage 1's residual stream) and bf16 (later stages)
    assert list(rows) == ["nchw amp=none", "channels_last amp=none", "nchw amp=bf16", "channels_last amp=bf16",
                          "nchw amp=bf16 input=bfloat16", "channels_last amp=bf16 input=bfloat16"]
    assert all(row["clone"] == 1.0 and row["native"] > 0 for row in rows.values())
    assert "timm_fast_norm" in rows["nchw amp=bf16 input=bfloat16"] and "timm_fast_norm" not in rows["nchw amp=none"]
    assert "time / two clones" in capsys.readouterr().out


def test_a_model_with_an_unknown_kernel_is_refused_naming_the_choices(capsys):
    from shiftvit.bench.models import parse_kernels, split_compiled

    assert parse_kernels("shiftvit_nano+triton+gn_triton") == ("shiftvit_nano", {"shift": "triton", "norm": "triton"})
    assert parse_kernels("shiftvit_nano[attn]") == ("shiftvit_nano[attn]", {})
    assert split_compiled("shiftvit_nano+triton+compiled") == ("shiftvit_nano+triton", "model")
    assert split_compiled("shiftvit_nano+compiled_blocks+triton") == ("shiftvit_nano+triton", "blocks")
    assert split_compiled("shiftvit_nano[attn]") == ("shiftvit_nano[attn]", None)
    choices = "torch, triton, auto, gn_native, gn_triton, gn_as_stored, compiled, compiled_blocks"
    with pytest.raises(ValueError, match=rf"suffix 'cuda' is not one of: {choices}"):
        parse_kernels("shiftvit_nano+cuda")
    assert main(["throughput", "shiftvit_nano+cuda", "--quick", "--out", ""]) == 2  # one line, no traceback
    assert f"suffix 'cuda' is not one of: {choices}" in capsys.readouterr().err


def test_the_engine_reads_no_number_per_step_and_adds_no_operations_per_step(tmp_path):
    """What makes a small model's step launch-bound on a GPU, counted on the CPU: the host waits (a tensor read
    back with ``.item()``, ``aten._local_scalar_dense``) and the ATen operations per step. The engine reads no
    number per step: its epoch's loss sums and non-finite flag come back at the epoch's end in one ``tolist()`` of
    one vector (a copy that dispatches no ATen operation on the CPU, so not counted here); and it dispatches no
    more operations than the bare loop."""
    from shiftvit.bench.training import _Loops

    loops = _Loops("shiftvit_nano", 32, "cpu", "relations", {"num_train": 128, "num_val": 32}, compile=False,
                   compile_mode="default", deterministic=False, epochs=2, run_dir=tmp_path)  # no process-wide flags
    counts = {}
    for name, epoch_fn in (("bare", loops.bare_epoch), ("engine", loops.engine_epoch)):
        counts[name], batches = loops.count_ops(epoch_fn, 0)
    assert batches == 4
    # on the CPU AdamW also reads its step counters back, the same number of times in both loops
    waits = {name: counter.by_op["_local_scalar_dense"] for name, counter in counts.items()}
    assert waits["engine"] == waits["bare"], waits
    assert counts["engine"].count <= counts["bare"].count * 1.01, (counts["engine"].count, counts["bare"].count)


def test_overhead_refuses_a_data_arg_that_is_not_key_value():
    with pytest.raises(SystemExit, match=r"--data-arg 'num_train' is not KEY=VALUE"):
        main(["overhead", "--data-arg", "num_train", "--out", ""])


def test_shift_bench_refuses_an_unknown_allocator(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["shift", "--quick", "--malloc", "jemalloc", "--out", ""])
    assert exit_info.value.code == 2
    assert "invalid choice: 'jemalloc'" in capsys.readouterr().err


def test_throughput_quick_with_autocast_and_channels_last(tmp_path):
    out = tmp_path / "throughput.json"
    assert main(["throughput", "shiftvit_nano", "shiftvit_nano+auto", "--quick", "--amp", "bf16", "--channels-last",
                 "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert (result["amp"], result["channels_last"], result["malloc"]) == ("bf16", True, "retain")
    assert result["rows"]["shiftvit_nano"]["train_median"] > 0 and result["rows"]["shiftvit_nano+auto"]["train_median"]
    assert result["shift_auto_choices"] == {}  # CPU tensors take the write-once kernel; auto chooses for GPU ones


def test_solver_bench_writes_depths(tmp_path):
    out = tmp_path / "solver.json"
    assert main(["solver", "--reference", "shiftvit_micro", "--img-size", "32", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert rows["identity"]["depths"] == [4, 4, 12, 4]
    assert all(abs(r["error"]) <= 0.02 for r in rows.values())


def test_throughput_quick_shape(tmp_path):
    out = tmp_path / "throughput.json"
    assert main(["throughput", "--quick", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert list(rows) == ["shiftvit_light_tiny", "shiftvit_light_tiny[attn]"] and result["interleaved"]
    assert rows["shiftvit_light_tiny"]["eval_ratio"] == 1.0
    for row in rows.values():
        assert row["eval_median"] > 0 and row["train_median"] > 0 and row["macs"] > 0
    # the attention model was solved to the shift model's FLOPs at the benchmark's input size
    assert abs(rows["shiftvit_light_tiny[attn]"]["macs"] / rows["shiftvit_light_tiny"]["macs"] - 1) <= 0.02


@pytest.mark.parametrize("name,size", [("shiftvit_nano", 32), ("shiftvit_light_tiny", 64)])
def test_ours_equals_official_structure_with_same_weights(name, size):
    from shiftvit.bench import bench_fast

    result = bench_fast(name, batch_size=2, img_size=size, repeats=1)
    assert set(result["max_abs_diff"]) == {"ours_nchw", "ours_channels_last"}
    assert all(d <= 1e-4 for d in result["max_abs_diff"].values()), result["max_abs_diff"]
    assert result["speedup"]["official"] == 1.0
    faults = result["minor_page_faults_per_pass"]
    assert set(faults) == {"official", "ours_nchw", "ours_channels_last"} and all(f >= 0 for f in faults.values())


def test_official_structure_really_uses_the_official_shift():
    import timm

    from shiftvit.bench import OfficialShift, official_structure

    model = official_structure(timm.create_model("shiftvit_nano"))
    mixers = [b.token_mixer for s in model.layers for b in s.blocks]
    assert mixers and all(isinstance(m, OfficialShift) for m in mixers)


def test_gpu_check_script_runs_end_to_end_in_quick_cpu_mode(tmp_path):
    """The script a GPU session runs must not rot between GPU sessions: its CPU dry run, every step."""
    import subprocess

    from helpers import ROOT, cli_env

    out = tmp_path / "gpu_check"
    proc = subprocess.run(["bash", str(ROOT / "experiments" / "gpu_check.sh"), str(out)], cwd=ROOT, text=True,
                          capture_output=True, timeout=900, env=cli_env(DEVICE="cpu", QUICK="1"))
    assert proc.returncode == 0, (proc.stdout + (out / "log.txt").read_text())[-3000:]
    steps = [line for line in proc.stdout.splitlines() if line.startswith("=== ")]
    # the steps that settle a target of issue #16 first, those that explain them after
    benchmarks = ["shift_nchw_float32", "shift_nchw_bfloat16", "shift_channels_last_float32",
                  "shift_channels_last_bfloat16", "throughput_bf16_channels_last", "fast_fp32", "fast_bf16",
                  "norm", "overhead_eager", "throughput_compiled", "overhead_compiled", "profile", "profile_filled",
                  "shift_stage3_channels_last_bfloat16", "shift_stage4_channels_last_bfloat16", "loader",
                  "overhead_eager_nondeterministic", "throughput_compiled_whole"]
    assert [s.split()[1] for s in steps] == ["env", *benchmarks, "targets"]
    assert all(" rc=0 " in s for s in steps)
    for name in benchmarks:
        assert json.loads((out / f"{name}.json").read_text())["malloc"] == "retain"
    assert json.loads((out / "overhead_compiled.json").read_text())["compile"] is True
    assert json.loads((out / "overhead_eager_nondeterministic.json").read_text())["deterministic"] is False
    assert json.loads((out / "profile_filled.json").read_text())["deterministic"] == "filled"
    eager = json.loads((out / "overhead_eager.json").read_text())
    assert len(eager["engine_images_per_s"]) == len(eager["bare_images_per_s"]) == eager["epochs"]
    assert set(eager["aten_ops_per_step"]) == {"bare", "engine"}
    targets = json.loads((out / "targets.json").read_text())["rows"]  # every target, from this run's JSON
    from shiftvit.bench.targets import TARGETS

    assert {row["target"] for row in targets} == {t.name for t in TARGETS}
    assert all(row["source"] is None or row["source"].startswith(str(out)) for row in targets)
    measured = {row["target"] for row in targets if row["ratio"] is not None}
    assert measured == {t.name for t in TARGETS} - {TARGETS[2].name}  # all but Swin-T, which the dry run leaves out


def test_profile_bench_quick_ranks_a_training_steps_operators_by_their_own_time(tmp_path, capsys):
    out = tmp_path / "profile.json"
    assert main(["profile", "--quick", "--device", "cpu", "--channels-last", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["rows"]) == {"shiftvit_light_tiny", "shiftvit_light_tiny+gn_as_stored"}
    for row in result["rows"].values():
        ms = [op["ms"] for op in row["top"]]
        assert 0 < row["copy_ms"] < row["busy_ms"] and row["wall_ms"] > 0 and 0 < row["busy_share"] <= 1.2
        assert ms == sorted(ms, reverse=True) and len(ms) == 15 and sum(op["share"] for op in row["top"]) <= 1
        # a training step: the backward ran, and the optimizer stepped (AdamW's update, among the costliest
        # operators of a small model's step; the ranking of the cheaper ones moves with the machine's load)
        ops = {op["op"] for op in row["top"]}
        assert any("backward" in op for op in ops) and "aten::addcdiv_" in ops, ops
        assert "kernels_per_step" not in row  # CPU: no kernels to count
    assert "shiftvit_light_tiny+gn_as_stored: wall" in capsys.readouterr().out
    assert main(["profile", "shiftvit_light_tiny+compiled", "--quick", "--device", "cpu", "--out", ""]) == 2
    assert "error: model 'shiftvit_light_tiny+compiled': the profile is of eager steps; drop +compiled" in \
        capsys.readouterr().err


def test_profile_bench_shows_what_the_deterministic_nan_fill_costs_and_restores_the_settings(tmp_path, capsys):
    """run.py's deterministic mode without PyTorch's NaN fill of new tensors (engine.use_deterministic_algorithms),
    against the same with it: the fills are the difference, and the process's settings are back afterwards."""
    flags = (torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory)
    fills = {}
    for mode in ("run", "filled"):
        out = tmp_path / f"{mode}.json"
        assert main(["profile", "shiftvit_nano", "--quick", "--device", "cpu", "--deterministic", mode,
                     "--out", str(out)]) == 0
        result = json.loads(out.read_text())
        assert result["deterministic"] == mode and f"deterministic={mode}" in capsys.readouterr().out
        fills[mode] = result["rows"]["shiftvit_nano"]["fill_calls"]
        assert (torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory) \
            == flags
    # one NaN fill per convolution and norm output and gradient of the step, at least
    assert fills["filled"] > fills["run"] + 40
    with pytest.raises(SystemExit, match="2"):
        main(["profile", "--quick", "--device", "cpu", "--deterministic", "on", "--out", ""])
    assert "argument --deterministic: invalid choice: 'on' (choose from 'off', 'run', 'filled')" in \
        capsys.readouterr().err


def test_loader_bench_quick_times_every_loader_of_a_cifar100_folder_it_writes(tmp_path, capsys):
    out = tmp_path / "loader.json"
    assert main(["loader", "--quick", "--data", "cifar100", "--device", "cpu", "--model", "none",
                 "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    cases = {"timm_dataloader", "crop_flip_dataloader", "crop_flip_on_device"}
    assert set(result["images_per_s"]) == cases and all(v > 0 for v in result["images_per_s"].values())
    assert result["ratio_to_timm"]["timm_dataloader"] == 1 and result["num_train"] == 512
    assert "crop_flip_on_device" in capsys.readouterr().out


def test_targets_are_read_off_the_committed_h200_results(tmp_path, capsys):
    """The targets table of the committed GPU runs: each ratio is the one in its file, the run that timed the
    models one after another says so, and a target no file measured says 'not measured'."""
    from helpers import ROOT

    from shiftvit.bench.targets import TARGETS

    runs = [ROOT / "docs" / "bench" / "h200" / commit for commit in ("7dea448", "2d9ae04")]
    out = tmp_path / "targets.json"
    assert main(["targets", *map(str, runs), "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    shift_t, compiled, swin = TARGETS[0].name, TARGETS[4].name, TARGETS[2].name
    shift_rows = [r for r in rows if r["target"] == shift_t and "Triton" not in r["case"]]
    assert len(shift_rows) == 6  # four layouts x dtypes in the first run, two reruns in the second
    for row in shift_rows:
        source = json.loads(open(row["source"]).read())
        assert row["ratio"] == source["ratio_to_clone"]["shiftvit"] and row["met"] == (row["ratio"] <= 1.5)
    [not_measured] = [r for r in rows if r["target"] == compiled]
    assert not_measured["ratio"] is None and not_measured["met"] is None
    plain = next(r for r in rows if r["target"] == swin and r["case"].startswith("shiftvit_r2_tiny,"))
    throughput = json.loads(open(plain["source"]).read())["rows"]
    assert plain["ratio"] == throughput["shiftvit_r2_tiny"]["train_median"] / throughput[
        "swin_tiny_patch4_window7_224"]["train_median"]
    assert "models timed one after another" in plain["case"]
    printed = capsys.readouterr().out
    assert "| compiled Shift-T training ÷ eager (bf16) | ≥ 1.5 | – | not measured | – | – |" in printed


def test_the_compiled_target_is_read_off_the_run_that_timed_it(tmp_path):
    """Run c02ec23 timed Shift-T compiled beside eager in one process: its targets table measures the compiled
    target with that file's ratio, and says it is not met."""
    from helpers import ROOT

    from shiftvit.bench.targets import TARGETS

    run = ROOT / "docs" / "bench" / "h200" / "c02ec23"
    out = tmp_path / "targets.json"
    assert main(["targets", str(run), "--out", str(out)]) == 0
    [compiled] = [r for r in json.loads(out.read_text())["rows"] if r["target"] == TARGETS[4].name]
    timed = json.loads((run / "throughput_compiled.json").read_text())["rows"]
    assert compiled["ratio"] == (timed["shiftvit_r2_tiny+compiled_blocks"]["train_median"]
                                 / timed["shiftvit_r2_tiny"]["train_median"])
    assert compiled["met"] is False and "compiled_blocks (default)" in compiled["case"]


def test_the_shift_target_counts_shift_t_stage_1_only(tmp_path):
    """A late stage's small tensor (gpu_check.sh times stages 3 and 4) is launch-bound: the issue sets the shift
    target at stage 1, so the table leaves the late stages out of it."""
    from helpers import ROOT

    from shiftvit.bench.targets import TARGETS, check_targets

    stage1 = json.loads((ROOT / "docs" / "bench" / "h200" / "7dea448" / "shift_nchw_float32.json").read_text())
    (tmp_path / "shift_nchw_float32.json").write_text(json.dumps(stage1))
    stage4 = {**stage1, "shape": [64, 768, 7, 7], "ratio_to_clone": {"shiftvit": 9.0, "shiftvit_triton": 8.0}}
    (tmp_path / "shift_stage4.json").write_text(json.dumps(stage4))
    rows = [r for r in check_targets([tmp_path])["rows"] if r["target"] == TARGETS[0].name]
    assert [r["ratio"] for r in rows] == [stage1["ratio_to_clone"]["shiftvit"],
                                          stage1["ratio_to_clone"]["shiftvit_triton"]]


def test_targets_of_a_folder_that_is_not_there_or_holds_a_broken_file_is_one_line(tmp_path):
    with pytest.raises(SystemExit, match=r"nowhere is not a directory: give the folder gpu_check.sh wrote"):
        main(["targets", str(tmp_path / "nowhere"), "--out", ""])
    (tmp_path / "shift.json").write_text('{"benchmark": "shift", ')  # a run cut off while writing
    with pytest.raises(SystemExit, match=r"shift.json is not readable JSON \(JSONDecodeError\): move it out of"):
        main(["targets", str(tmp_path), "--out", ""])
