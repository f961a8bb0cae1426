import json

from shiftvit.bench import main


def test_shift_bench_quick_writes_ratios(tmp_path, capsys):
    out = tmp_path / "shift.json"
    assert main(["shift", "--quick", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["ratio_to_clone"]) == {"clone", "shiftvit", "official"}
    assert result["ratio_to_clone"]["clone"] == 1.0
    assert all(v > 0 for v in result["median_ms"].values())
    assert "x clone (median)" in capsys.readouterr().out


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
    assert list(rows) == ["shiftvit_light_tiny", "shiftvit_light_tiny[attn]"]
    assert rows["shiftvit_light_tiny"]["eval_ratio"] == 1.0
    for row in rows.values():
        assert row["eval_median"] > 0 and row["train_median"] > 0 and row["macs"] > 0
    # the attention model was solved to the shift model's FLOPs at the benchmark's input size
    assert abs(rows["shiftvit_light_tiny[attn]"]["macs"] / rows["shiftvit_light_tiny"]["macs"] - 1) <= 0.02
