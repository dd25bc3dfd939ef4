"""`sisr bench`: the FLOP count against hand counts, and the report's fields (no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from sisr import SisrError, create_model
from sisr.cli import main
from sisr.speed import BenchResult, bench_model, count_flops, format_result, result_dict, run_bench


def test_flops_of_a_small_convolution_stack_by_hand():
    network = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 1))
    # Per output pixel: 3 * 8 * 9 multiply-adds, then 8 * 3; two FLOPs each; biases and ReLU not counted.
    assert count_flops(network, 5, 7) == 2 * (3 * 8 * 9 + 8 * 3) * 5 * 7


def test_flops_of_edsr_by_hand():
    model = create_model("edsr-baseline-x4", num_blocks=2, num_filters=4)
    lr = 6 * 10
    per_lr_pixel = (
        3 * 4 * 9  # head
        + (2 * 2 + 1) * 4 * 4 * 9  # two blocks of two convs, and the body's last conv
        + 4 * 16 * 9  # first x2 stage at LR size
        + 4 * (4 * 16 * 9)  # second x2 stage at 2x the size: 4x the pixels
        + 16 * (4 * 3 * 9)  # tail at 4x: 16x the pixels
    )
    assert count_flops(model.network, 6, 10) == 2 * per_lr_pixel * lr


def test_flops_of_wdsr_b_by_hand():
    model = create_model("wdsr-b-16-x2", num_blocks=3)  # 32 filters, expansion 6 (192), low rank 25
    per_pixel = 3 * 32 * 9 + 3 * (32 * 192 + 192 * 25 + 25 * 32 * 9) + 32 * 12 * 9 + 3 * 12 * 25
    assert count_flops(model.network, 8, 9) == 2 * per_pixel * 8 * 9


def test_the_count_leaves_the_model_where_it_was():
    model = create_model("wdsr-b-16-x2", num_blocks=1)
    count_flops(model.network, 8, 8)
    assert all(p.device.type == "cpu" for p in model.network.parameters())


def test_bench_result_fields_are_consistent():
    result = run_bench("wdsr-b-16-x2", size=12, repeat=2, peak_side=128, device="cpu")
    assert isinstance(result, BenchResult)
    assert result.scale == 2 and result.input_size == [12, 12] and result.output_size == [24, 24]
    assert result.flops == count_flops(create_model("wdsr-b-16-x2").network, 12, 12)
    assert result.seconds > 0 and result.seconds <= result.seconds_median
    assert result.gflops_per_second == pytest.approx(result.flops / result.seconds / 1e9)
    assert result.fraction_of_peak == pytest.approx(result.gflops_per_second / result.matmul_peak_gflops)
    assert result.output_megapixels_per_second == pytest.approx(24 * 24 / result.seconds / 1e6)
    assert result.fused and result.threads == torch.get_num_threads()
    text = format_result(result)
    assert "seconds per image" in text and "fraction of peak" in text


def test_cli_json_has_every_field(capsys):
    assert main(["bench", "--model", "bicubic", "--scale", "3", "--size", "10", "--repeat", "1", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    expected = set(result_dict(run_bench("bicubic", scale=3, size=4, repeat=1, peak_side=64)).keys())
    assert set(record) == expected
    for key in ("seconds", "output_megapixels_per_second", "flops", "matmul_peak_gflops", "fraction_of_peak"):
        assert key in record
    assert record["model"] == "bicubic" and record["output_size"] == [30, 30] and record["precision"] == "fp32"


def test_bench_model_takes_presets_and_what_load_model_takes():
    preset = bench_model("wdsr-b-16-x2")
    assert (preset.name, preset.scale, preset.info.source) == ("wdsr-b-16-x2", 2, "preset")
    bicubic = bench_model("bicubic", 3)
    assert (bicubic.name, bicubic.scale, bicubic.info.source) == ("bicubic", 3, "bicubic")
    bundled = bench_model("default-x2", 2)
    assert (bundled.name, bundled.info.source) == ("default-x2", "bundled")
    with pytest.raises(SisrError, match="x2, but --scale 4"):
        bench_model("wdsr-b-16-x2", 4)


def test_bench_accepts_a_model_object():
    result = run_bench(create_model("edsr-baseline-x2", num_blocks=1, num_filters=8), size=8, repeat=1, peak_side=64)
    assert result.model == "edsr-baseline-x2" and result.scale == 2 and result.output_size == [16, 16]


def test_bad_requests_are_errors(capsys):
    assert main(["bench", "--model", "bicubic", "--size", "8"]) == 1
    assert "--model bicubic needs --scale" in capsys.readouterr().err
    with pytest.raises(SisrError, match="repeat 0"):
        run_bench("bicubic", scale=2, size=8, repeat=0)
    with pytest.raises(SisrError, match="x4, but --scale 2"):
        run_bench("edsr-baseline-x4", scale=2, size=8, repeat=1)
    with pytest.raises(SisrError, match="size 1x1"):
        run_bench("bicubic", scale=2, size=1, repeat=1)


def test_the_peak_measures_in_the_asked_precision_and_leaves_torchs_tf32_switch_alone():
    """On CUDA, float32 convolutions run on TF32 tensor cores by default, so fp32 rows are compared with the
    TF32 product peak; measuring it must not change the switch that the user's own products follow."""
    from sisr.speed import MatmulPeak

    before = torch.backends.cuda.matmul.allow_tf32
    peak = MatmulPeak(torch.device("cpu"), torch.float32, 64, tf32=not before)
    assert peak.best > 0 and peak.flops == 2 * 64**3
    assert torch.backends.cuda.matmul.allow_tf32 == before
    result = run_bench("bicubic", scale=2, size=8, repeat=1)  # CPU: the 2048 product, plain float32
    assert result.matmul_peak_side == 2048 and result.matmul_peak_dtype == "float32"


@pytest.mark.slow
def test_the_gpu_benchmark_script_runs_on_the_cpu_too(tmp_path):
    """benchmarks/bench_gpu.py only gets a GPU now and then, for minutes: it must work the first time there.
    On the CPU it runs the same code paths (peaks, rows, tiling check) at a tiny size."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [
            sys.executable,
            str(script),
            "--device",
            "cpu",
            "--sizes",
            "12",
            "--repeat",
            "1",
            "--precisions",
            "fp32",
            "--networks",
            "edsr-baseline-x4",
            "--compile",
            "--pageable",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    rows = {(row["implementation"], row["precision"]): row for row in report["rows"]}
    assert set(rows) == {("eager", "fp32"), ("sisr", "fp32"), ("sisr-pageable", "fp32"), ("compile", "fp32")}
    for row in rows.values():
        assert not row["error"], row["error"]
        assert row["seconds"] > 0 and row["network_seconds"] > 0 and row["fraction_of_peak"] > 0
        assert row["flops"] == count_flops(create_model("edsr-baseline-x4").network, 12, 12)
    assert set(report["matmul_peak_gflops"]) == {"fp32", "tf32", "bf16", "fp16"}
    assert report["tiling"] == [
        {
            "precision": "fp32",
            "max_levels": 0,
            "share_differing": 0.0,
            "input": [150, 200, 3],
            "pinned_vs_pageable_max_levels": 0,
            "uint16_vs_cpu_fp32_max_levels": 0.0,
        }
    ]


def test_the_profile_script_lists_the_operators(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "profile_network.py"
    done = subprocess.run(
        [sys.executable, str(script), "--model", "wdsr-b-16-x2", "--size", "8", "--rows", "5", "--upscale"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "wdsr-b-16-x2 8x8, fp32" in done.stdout and "whole upscale call" in done.stdout
    assert "aten::" in done.stdout


def test_the_allocator_benchmark_compares_both_settings(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_allocator.py"
    out = tmp_path / "allocator.json"
    done = subprocess.run(
        [
            sys.executable,
            str(script),
            "--models",
            "wdsr-b-16-x2",
            "--size",
            "8",
            "--rounds",
            "1",
            "--repeat",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    records = json.loads(out.read_text())
    assert [r["setting"] for r in records] == ["malloc as it is", "freed memory kept (sisr)"]
    assert all(r["seconds"] > 0 and r["output_size"] == [16, 16] for r in records)
    assert "freed memory kept (sisr)" in done.stdout


def test_the_native_kernel_benchmark_compares_both_forms(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from sisr.inference import native

    if native.library() is None:
        pytest.skip(f"native kernels unavailable here: {native.unavailable_reason()}")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_native.py"
    out = tmp_path / "native.json"
    done = subprocess.run(
        [sys.executable, str(script), "--size", "16", "--repeat", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [(r["part"].split(",")[0], r["form"]) for r in rows] == [
        ("WDSR-B 1x1 pair", "native"),
        ("WDSR-B 1x1 pair", "BLAS products"),
        ("64 -> 3 conv", "native"),
        ("64 -> 3 conv", "oneDNN"),
        ("wdsr-b-32-x4 network", "native"),
        ("wdsr-b-32-x4 network", "PyTorch layers"),
        ("default-x4 network", "native"),
        ("default-x4 network", "PyTorch layers"),
        ("edsr-baseline-x4 network", "native"),
        ("edsr-baseline-x4 network", "PyTorch layers"),
    ]
    assert all(r["seconds"] > 0 and r["max_difference"] < 1e-3 for r in rows)


def test_the_startup_benchmark_runs_each_command_and_reports_it():
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_startup.py"
    done = subprocess.run([sys.executable, str(script), "--repeat", "1"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "1 runs each" in lines[0]
    rows = {line.split(" best ")[0].strip(): line for line in lines[1:]}
    assert set(rows) == {"sisr --help", "sisr models", "import torch", "python"}
    assert all(" s, median " in row for row in rows.values())


def test_the_report_says_which_path_was_chosen_and_how(monkeypatch, tmp_path):
    from sisr.inference import native

    monkeypatch.setenv("SISR_CACHE", str(tmp_path))
    monkeypatch.delenv("SISR_AUTOTUNE", raising=False)  # measured, whatever the suite's default
    model = create_model("wdsr-b-16-x2", num_blocks=2)
    first = run_bench(model, size=12, repeat=1, peak_side=64)
    assert first.tuning is not None and first.tuning["chosen"] == first.path and first.path.startswith("fp32")
    text = format_result(first)
    assert f"path               {first.path} ({first.tuning['how']})" in text
    if native.library() is None:  # one fp32 form only: nothing measured
        assert first.tuning["how"] == "one candidate" and not first.tuning["seconds"]
        return
    busy = "measured on a busy machine, not kept"  # then not kept: the next run measures again
    assert first.tuning["how"] in ("measured", busy)
    assert set(first.tuning["seconds"]) == {"fp32 native", "fp32 pytorch"} and "--retune measures again" in text
    if first.tuning["how"] == "measured":
        assert first.tuning["file"] in text
    again = run_bench(model, size=12, repeat=1, peak_side=64).tuning["how"]
    assert again == ("cached" if first.tuning["how"] == "measured" else busy)  # busy: kept in the process
    assert run_bench(model, size=12, repeat=1, peak_side=64, retune=True).tuning["how"] in ("measured", busy)
    assert json.loads(json.dumps(result_dict(first)))["tuning"]["chosen"] == first.path


def test_the_bf16_benchmark_compares_the_forms_before_and_after(tmp_path):
    from sisr.inference.precision import _detect_native_bf16

    if not _detect_native_bf16():
        pytest.skip("the bf16 benchmark needs a CPU with native bf16")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_bf16.py"
    out = tmp_path / "bf16.json"
    env = {**__import__("os").environ, "SISR_CPU_BF16": ""}
    done = subprocess.run(
        [sys.executable, str(script), "--networks", "default-x4", "--size", "12", "--repeat", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    forms = [row["form"] for row in rows]
    assert forms[0] == "fp32" and forms[-2:] == ["bf16 before (products)", "bf16 after (oneDNN fused)"]
    assert all(row["seconds"] > 0 and row["speedup_vs_best_fp32"] > 0 for row in rows)
