"""Benchmark measurements: written atomically by the benchmarks' --save, read back into the book's tables."""
import json

import pytest

from mmdg.experiments.measurements import overhead_table, read_measurements, throughput_table, write_measurement

from conftest import load_script


def _overhead(base_ms, fast_ms, naive_ms, date, config="cpu"):
    return {"config": config, "settings": "fp32, eager", "target": 1.7,
            "median_ms": {"base (sum)": base_ms, "gmp fast": fast_ms, "gmp naive": naive_ms},
            "ratio": {"base (sum)": 1.0, "gmp fast": fast_ms / base_ms, "gmp naive": naive_ms / base_ms}}, \
        {"date": date, "commit": "abc1234", "device_name": "testbox"}


def test_measurements_round_trip_sorted_by_date_and_tabulated(tmp_path):
    rec, env = _overhead(10.0, 12.5, 15.0, "2026-12-02 10:00:00 UTC")
    write_measurement(tmp_path / "a", "gmp_overhead", "cpu", rec, env)
    rec2, env2 = _overhead(4.0, 4.2, 4.6, "2026-11-30 09:00:00 UTC", config="gpu")
    write_measurement(tmp_path / "b", "gmp_overhead", "gpu", rec2, env2)
    found = read_measurements([tmp_path / "a", tmp_path / "b", tmp_path / "missing"], "gmp_overhead")
    assert [r["config"] for r in found] == ["gpu", "cpu"]          # oldest first
    table = overhead_table(found)
    assert table["GMP fast / Base"].tolist() == ["1.05×", "1.25×"]
    assert table["GMP naive / Base"].tolist() == ["1.15×", "1.50×"]
    assert table["Base (ms)"].tolist() == ["4.0", "10.0"] and table["target"].tolist() == ["≤ 1.70×"] * 2
    assert table["machine"].tolist() == ["testbox", "testbox"]
    assert table["measured"].tolist() == ["2026-11-30, commit abc1234", "2026-12-02, commit abc1234"]
    assert read_measurements([tmp_path / "a"], "loader_throughput") == []


def test_measurement_errors_name_the_problem(tmp_path):
    rec, env = _overhead(1.0, 1.0, 1.0, "2026-12-02")
    with pytest.raises(ValueError, match="kind must be one of"):
        write_measurement(tmp_path, "speed", "cpu", rec, env)
    with pytest.raises(ValueError, match="letters, digits"):
        write_measurement(tmp_path, "gmp_overhead", "a/b", rec, env)
    (tmp_path / "gmp_overhead_bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="gmp_overhead_bad.json is not valid JSON"):
        read_measurements([tmp_path], "gmp_overhead")
    (tmp_path / "gmp_overhead_bad.json").write_text(json.dumps({"kind": "loader_throughput", "env": {}}))
    with pytest.raises(ValueError, match="expected kind 'gmp_overhead'"):
        read_measurements([tmp_path], "gmp_overhead")


def test_throughput_table_has_one_column_per_worker_count(tmp_path):
    write_measurement(tmp_path, "loader_throughput", "2cores",
                      {"clips_per_s": {"epic_kitchens": {"0": 0.8123, "2": 2.5}, "hac": {"0": 0.6, "2": 1.4}}},
                      {"date": "2026-12-02 00:00:00 UTC", "commit": "abc1234", "machine": "x86_64, 2 CPU cores"})
    table = throughput_table(read_measurements([tmp_path], "loader_throughput"))
    assert table["benchmark"].tolist() == ["epic_kitchens", "hac"]
    assert table["0 workers"].tolist() == ["0.81", "0.60"]
    assert table["2 workers"].tolist() == ["2.50", "1.40"]


def test_gmp_overhead_benchmark_saves_what_it_prints(tmp_path, capsys):
    bench = load_script("benchmarks/gmp_overhead.py")
    ratios = bench.main(["--config", "gpu", "--device", "cpu", "--tiny", "--steps", "2", "--warmup", "0",
                         "--save", str(tmp_path)])
    [rec] = read_measurements([tmp_path], "gmp_overhead")
    assert (tmp_path / "gmp_overhead_gpu_tiny.json").exists()
    assert rec["settings"] == "fp32, tiny shapes, eager" and rec["target"] == 1.10
    assert rec["ratio"]["gmp fast"] == pytest.approx(ratios["gpu"]["fast"])
    assert rec["ratio"]["gmp naive"] == pytest.approx(ratios["gpu"]["naive"])
    assert rec["env"]["device"] == "cpu" and rec["steps"] == 2
    assert overhead_table([rec])["machine"].tolist() == [f"CPU, {rec['env']['threads']} torch threads"]
    assert f"ratio GMP fast / base = {ratios['gpu']['fast']:.3f}" in capsys.readouterr().out
