"""Reading training logs: malformed lines skipped, bookkeeping dropped, runs chained on one step axis."""

from __future__ import annotations

import logging

import pytest

from run_logs import run_records, write_log
from sisr.errors import SisrError
from sisr.figures.logs import chain_stages, log_series, read_log


def test_read_log_skips_malformed_lines_with_a_warning_naming_the_line(tmp_path, caplog):
    log = write_log(tmp_path / "log.jsonl", run_records()[:3], ['{"event": "train", "st', "[1, 2]"])
    with caplog.at_level(logging.WARNING, logger="sisr"):
        records = read_log(tmp_path)  # a run folder means its log.jsonl
    assert len(records) == 3
    assert f"{log}:4" in caplog.text and f"{log}:5" in caplog.text


def test_an_empty_or_missing_log_is_an_error_naming_it(tmp_path):
    (tmp_path / "log.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(SisrError, match="log.jsonl.*no records"):
        read_log(tmp_path / "log.jsonl")
    with pytest.raises(SisrError, match="nothing"):
        read_log(tmp_path / "nothing")


def test_log_series_keeps_measurements_and_drops_bookkeeping_and_constants():
    series = {(s.event, s.name): s for s in log_series(run_records())}
    assert set(series) == {("train", "loss"), ("train", "psnr_rgb"), ("train", "steps_per_s"), ("val", "psnr")}
    val = series[("val", "psnr")]
    assert val.steps == [500, 1000, 1500, 2000] and val.values == [30.5, 31.0, 31.5, 32.0]
    assert val.label == "val psnr (Set5)"
    assert [s.name for s in log_series(run_records(), fields=["loss"])] == ["loss"]


def test_a_single_validation_point_is_still_plotted():
    series = log_series([{"event": "val", "step": 10, "psnr": 30.0}, {"step": 5, "loss": 0.1}])
    assert {(s.event, s.name) for s in series} == {("val", "psnr"), ("train", "loss")}


def test_successive_stages_share_one_step_axis(tmp_path):
    """A run trained on from another's weights: its steps continue where the first run's ended."""
    first = write_log(tmp_path / "first.jsonl", run_records(range(100, 1001, 100)))
    (tmp_path / "second").mkdir()
    write_log(tmp_path / "second" / "log.jsonl", run_records(range(100, 501, 100)))
    chained = chain_stages([read_log(first), read_log(tmp_path / "second")])
    series = {(s.event, s.name): s for s in log_series(chained)}
    assert series[("val", "psnr")].steps == [500, 1000, 1500]  # 500 and 1000, then the second run's 500
    loss = series[("train", "loss")]
    assert loss.steps == [float(step) for step in range(100, 1501, 100)]
    assert loss.values[10] == pytest.approx(1 / 100)  # the second run's first record, at step 1000 + 100
