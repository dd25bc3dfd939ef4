"""`plot_log` and `sisr plot-log`: a run's log, or several runs' logs in a row, as one image."""

from __future__ import annotations

import logging

import pytest
from PIL import Image

from run_logs import run_records, write_log
from sisr.cli import main
from sisr.errors import SisrError
from sisr.figures.charts import plot_curves
from sisr.figures.curves import plot_log
from sisr.figures.logs import chain_stages, log_series, read_log


def test_plot_log_cli_writes_a_png_of_the_layout_size(tmp_path, caplog):
    write_log(tmp_path / "log.jsonl", run_records(), ["not json"])
    out = tmp_path / "curves.png"
    with caplog.at_level(logging.WARNING, logger="sisr"):
        assert main(["plot-log", str(tmp_path), "-o", str(out), "--log-loss", "--smooth", "0.5"]) == 0
    assert "log.jsonl:" in caplog.text
    with Image.open(out) as image:
        assert image.format == "PNG"
        size = image.size
    # 4 charts (loss, PSNR, learning rate is constant so left out, steps per s) in 2 columns; title on top.
    reference, layout = plot_curves(log_series(run_records()), log_loss=True, title="x")
    assert size == layout.size == reference.size
    assert len(layout.plot_areas) == 3
    assert main(["plot-log", str(tmp_path), "-o", str(out)]) == 1  # exists, no --overwrite


def test_plot_log_of_an_empty_log_is_an_error(tmp_path, capsys):
    (tmp_path / "log.jsonl").write_text("", encoding="utf-8")
    assert main(["plot-log", str(tmp_path), "-o", str(tmp_path / "c.png")]) == 1
    assert "no records" in capsys.readouterr().err
    with pytest.raises(SisrError, match="no numeric fields"):
        write_log(tmp_path / "log.jsonl", [{"event": "start", "step": 0}])
        plot_log(tmp_path)


def test_plots_the_log_the_trainer_writes(tmp_path):
    from sisr.train.logging import RunLog

    run_log = RunLog(tmp_path, enabled=True, total_steps=300, start_step=0, progress_bar=False)
    for step in range(10, 301, 10):
        run_log.interval(
            step,
            loss=0.1 / step**0.5,
            psnr_rgb=20 + step / 30,
            lr=1e-4 if step < 200 else 5e-5,
            steps_per_s=5.0,
            patches_per_s=80.0,
        )
        if step % 100 == 0:
            run_log.validation(
                step,
                psnr=30 + step / 100,
                best_psnr=30 + step / 100,
                best_step=step,
                set_name="Set5",
                images=5,
                seconds=1.0,
            )
    run_log.close()
    series = log_series(read_log(tmp_path))
    names = {(s.event, s.name, s.set_name) for s in series}
    assert names == {
        ("train", "loss", None),
        ("train", "psnr_rgb", None),
        ("train", "lr", None),
        ("val", "psnr", "Set5"),
    }
    image = plot_log(tmp_path, log_loss=True)
    _, layout = plot_curves(series, log_loss=True, title=tmp_path.name)
    assert image.size == layout.size and len(layout.plot_areas) == 3  # loss, PSNR, learning rate


def test_successive_stages_are_plotted_on_one_step_axis(tmp_path):
    """A run trained on from another's weights: one figure, its steps continuing the first run's."""
    first = write_log(tmp_path / "first.jsonl", run_records(range(100, 1001, 100)))
    (tmp_path / "second").mkdir()
    write_log(tmp_path / "second" / "log.jsonl", run_records(range(100, 501, 100)))
    series = log_series(chain_stages([read_log(first), read_log(tmp_path / "second")]))

    out = tmp_path / "stages.png"
    assert main(["plot-log", str(first), str(tmp_path / "second"), "-o", str(out)]) == 0
    _, layout = plot_curves(series, title="x")
    with Image.open(out) as image:
        assert image.size == layout.size
    assert plot_log([first, tmp_path / "second"]).size == layout.size
    with pytest.raises(SisrError, match="no such training log"):
        plot_log([first, tmp_path / "missing"])
