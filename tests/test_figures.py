"""Figures: layout of comparison panels, nice ticks, reading training logs, drawing curves."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
from PIL import Image

from sisr.cli import main
from sisr.errors import SisrError
from sisr.figures import (
    CROP_BOX_COLOR,
    PALETTE,
    CropBox,
    Panel,
    chain_stages,
    check_crop,
    compose_comparison,
    default_columns,
    ema,
    format_tick,
    legend_label,
    log_series,
    log_ticks,
    metrics_label,
    most_detailed_crop,
    nearest_enlarge,
    nice_ticks,
    parse_crop,
    plot_curves,
    plot_log,
    read_log,
)

# ------------------------------------------------------------------ ticks and labels


@pytest.mark.parametrize(
    ("low", "high", "max_ticks", "expected"),
    [
        (0, 37, 6, [0, 10, 20, 30]),
        (0, 30000, 6, [0, 10000, 20000, 30000]),
        (0, 30000, 7, [0, 5000, 10000, 15000, 20000, 25000, 30000]),
        (33.2, 36.1, 6, [34, 35, 36]),
        (33.2, 36.1, 7, [33.5, 34.0, 34.5, 35.0, 35.5, 36.0]),
        (0.0073, 0.0612, 6, [0.02, 0.04, 0.06]),
        (0.0073, 0.0612, 10, [0.01, 0.02, 0.03, 0.04, 0.05, 0.06]),
        (-1, 1, 6, [-1.0, -0.5, 0.0, 0.5, 1.0]),
        (5, 5, 6, [5]),
    ],
)
def test_nice_ticks_are_round_and_inside_the_range(low, high, max_ticks, expected):
    assert nice_ticks(low, high, max_ticks) == expected  # exact: no 0.30000000000000004 in labels


def test_nice_ticks_respect_the_maximum_count():
    for high in (1, 3, 7, 37, 99, 1234, 0.05):
        ticks = nice_ticks(0, high, max_ticks=5)
        assert 2 <= len(ticks) <= 5, (high, ticks)


def test_log_ticks_use_decades_or_1_2_5_within_one_decade():
    assert log_ticks(1e-4, 0.2) == [1e-4, 1e-3, 1e-2, 0.1]
    assert log_ticks(0.0073, 0.0612) == [0.01, 0.02, 0.05]


def test_tick_labels_are_short_and_consistent_on_one_axis():
    assert format_tick(5000, 5000, 30000) == "5k"  # not "5000" next to "10k"
    assert format_tick(25000, 5000, 30000) == "25k"
    assert format_tick(1_500_000, 500_000, 2_000_000) == "1.5M"
    assert format_tick(35.0, 1.0) == "35"
    assert format_tick(34.5, 0.5) == "34.5"
    assert format_tick(0.02, 0.01) == "0.02"
    assert format_tick(7.5, 2.5) == "7.5"
    assert format_tick(8e-5, 2e-5, 1e-4) == "8e-5"
    assert format_tick(0, 0.5) == "0"


def test_metrics_label_prints_psnr_to_hundredths_and_ssim_to_four_places():
    assert metrics_label(31.234567, 0.912345) == "PSNR 31.23 dB / SSIM 0.9123"
    assert metrics_label(28.0049, None) == "PSNR 28.00 dB"
    assert metrics_label(None, None) == ""
    assert metrics_label(math.inf, 1.0) == "PSNR inf / SSIM 1.0000"


# ------------------------------------------------------------------ crops and layout


def test_parse_crop_reads_four_integers_and_rejects_anything_else():
    assert parse_crop("10, 20,30,40") == CropBox(10, 20, 30, 40)
    for bad in ("10,20,30", "a,b,c,d", "1,2,3,4,5", ""):
        with pytest.raises(SisrError, match="--crop"):
            parse_crop(bad)


@pytest.mark.parametrize("crop", [(90, 0, 20, 20), (0, 0, 0, 5), (-1, 0, 10, 10), (0, 50, 10, 11)])
def test_a_crop_outside_the_image_is_an_error_naming_the_image_size(crop):
    with pytest.raises(SisrError, match="100x60|positive"):
        check_crop(CropBox(*crop), 100, 60)


def test_most_detailed_crop_finds_the_textured_square():
    rng = np.random.default_rng(0)
    image = np.full((120, 160, 3), 128, np.uint8)
    image[64:96, 96:128] = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    crop = most_detailed_crop(image, 32, 32, align=4)
    assert crop == CropBox(96, 64, 32, 32)
    assert crop.x % 4 == 0 and crop.y % 4 == 0


def test_nearest_enlarge_repeats_each_pixel_as_a_block():
    image = np.array([[1, 2], [3, 4]], np.uint8)
    assert nearest_enlarge(image, 2).tolist() == [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]


def test_default_columns_keep_rows_short_and_even():
    assert [default_columns(n) for n in (1, 4, 5, 6, 7, 10, 11)] == [1, 4, 5, 3, 4, 5, 4]


def _noise_panels(count: int, height: int = 60, width: int = 80) -> list[Panel]:
    rng = np.random.default_rng(1)
    return [
        Panel(f"panel {i}", rng.integers(0, 256, (height, width, 3), dtype=np.uint8), psnr=30.0 + i, ssim=0.9)
        for i in range(count)
    ]


def test_composed_panels_show_the_same_crop_of_each_image_enlarged_by_zoom():
    panels = _noise_panels(3)
    crop = CropBox(10, 20, 24, 16)
    figure = compose_comparison(panels, crop, zoom=3, columns=2, overview=panels[0].image, caption="a caption")
    pixels = np.asarray(figure)
    # Two columns of cells: overview + 3 panels -> 2 rows; each image cell is the crop x zoom.
    assert figure.mode == "RGB"
    found = []
    for panel in panels:
        expected = np.repeat(np.repeat(panel.image[20:36, 10:34], 3, axis=0), 3, axis=1)
        candidates = zip(*np.nonzero((pixels[:-47, :-71] == expected[0, 0]).all(axis=-1)))
        hits = [(y, x) for y, x in candidates if np.array_equal(pixels[y : y + 48, x : x + 72], expected)]
        assert len(hits) == 1, panel.title
        found.append(hits[0])
    # Reading order: panel 0 top-right (after the overview), then the second row.
    (y0, x0), (y1, x1), (y2, x2) = found
    assert y0 < y1 == y2 and x1 < x0 and x2 > x1
    # Background is white and the crop is outlined in the overview.
    assert tuple(pixels[0, 0]) == (255, 255, 255) and tuple(pixels[-1, -1]) == (255, 255, 255)
    assert (pixels == CROP_BOX_COLOR).all(axis=-1).sum() > 20


def test_figure_size_follows_the_layout():
    from sisr.figures import LABEL_GAP, LABEL_SIZE, TITLE_SIZE, font, line_height

    panels = _noise_panels(4, height=60, width=120)
    # Crops 100x30 at zoom 2 make 200x60 images, wider than any label, so they set the cell width.
    one_row = compose_comparison(panels, CropBox(0, 0, 100, 30), zoom=2, overview=None)
    two_rows = compose_comparison(panels, CropBox(0, 0, 100, 30), zoom=2, columns=2, overview=None)
    margin, gap = 16, 14
    cell_height = 60 + LABEL_GAP + line_height(font(TITLE_SIZE)) + line_height(font(LABEL_SIZE))
    assert one_row.size == (2 * margin + 4 * 200 + 3 * gap, 2 * margin + cell_height)
    assert two_rows.size == (2 * margin + 2 * 200 + gap, 2 * margin + 2 * cell_height + gap)


def test_panels_of_different_sizes_are_an_error():
    panels = _noise_panels(2)
    panels[1].image = panels[1].image[:50]
    with pytest.raises(SisrError, match="panel 1"):
        compose_comparison(panels, CropBox(0, 0, 10, 10))


# ------------------------------------------------------------------ training logs


def _write_log(path, records, extra_lines=()):
    lines = [json.dumps(r) for r in records] + list(extra_lines)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _run_records(steps=range(100, 2001, 100)):
    records = [{"event": "start", "step": 0, "world_size": 1}]
    for step in steps:
        records.append(
            {
                "event": "train",
                "time": 1e9 + step,
                "step": step,
                "loss": 1.0 / step,
                "psnr_rgb": 20 + step / 200,
                "lr": 1e-4,
                "steps_per_s": 10.0 + step % 3,
            }
        )
        if step % 500 == 0:
            records.append(
                {
                    "event": "val",
                    "step": step,
                    "psnr": 30 + step / 1000,
                    "best_psnr": 30 + step / 1000,
                    "best_step": step,
                    "set": "Set5",
                    "images": 5,
                    "seconds": 1.5,
                }
            )
    return records


def test_read_log_skips_malformed_lines_with_a_warning_naming_the_line(tmp_path, caplog):
    log = _write_log(tmp_path / "log.jsonl", _run_records()[:3], ['{"event": "train", "st', "[1, 2]"])
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
    series = {(s.event, s.name): s for s in log_series(_run_records())}
    assert set(series) == {("train", "loss"), ("train", "psnr_rgb"), ("train", "steps_per_s"), ("val", "psnr")}
    val = series[("val", "psnr")]
    assert val.steps == [500, 1000, 1500, 2000] and val.values == [30.5, 31.0, 31.5, 32.0]
    assert val.label == "val psnr (Set5)"
    assert legend_label(val, "psnr") == "val psnr (Set5): best 32.00 at step 2000"
    assert [s.name for s in log_series(_run_records(), fields=["loss"])] == ["loss"]


def test_a_single_validation_point_is_still_plotted():
    series = log_series([{"event": "val", "step": 10, "psnr": 30.0}, {"step": 5, "loss": 0.1}])
    assert {(s.event, s.name) for s in series} == {("val", "psnr"), ("train", "loss")}


def test_ema_is_debiased_like_tensorboard():
    assert ema([1.0, 1.0, 1.0], 0.9) == pytest.approx([1.0, 1.0, 1.0])
    assert ema([0.0, 2.0], 0.5) == pytest.approx([0.0, 1.0 / 0.75])
    with pytest.raises(SisrError):
        ema([1.0], 1.0)


def _near(pixels: np.ndarray, color, tolerance: int = 40) -> np.ndarray:
    return np.abs(pixels.astype(int) - np.array(color)).sum(axis=-1) <= tolerance


def test_curves_go_where_the_values_are(tmp_path):
    # Loss falls linearly; validation PSNR rises: check the drawn line does the same.
    records = [{"event": "train", "step": s, "loss": 1.0 - s / 1000} for s in range(0, 1001, 50)]
    records += [{"event": "val", "step": s, "psnr": 20 + s / 100} for s in range(0, 1001, 250)]
    image, layout = plot_curves(log_series(records))
    pixels = np.asarray(image)
    assert len(layout.plot_areas) == 2 and image.size == layout.size
    for area, rising in zip(layout.plot_areas, (False, True)):
        left, top, right, bottom = (int(round(v)) for v in area)
        inside = _near(pixels[top + 2 : bottom - 1, left + 2 : right - 1], PALETTE[0])
        rows_by_column = [
            np.flatnonzero(inside[:, x]).mean() for x in range(5, inside.shape[1] - 5, 20) if inside[:, x].any()
        ]
        assert len(rows_by_column) >= 10  # the curve spans the plot
        step_down = np.diff(rows_by_column)
        assert (step_down < 0).all() if rising else (step_down > 0).all()
        # The line fills the plot's height: from near one edge to near the other.
        assert rows_by_column[0 if rising else -1] > 0.8 * inside.shape[0]
        assert rows_by_column[-1 if rising else 0] < 0.2 * inside.shape[0]


def test_plot_log_cli_writes_a_png_of_the_layout_size(tmp_path, caplog):
    _write_log(tmp_path / "log.jsonl", _run_records(), ["not json"])
    out = tmp_path / "curves.png"
    with caplog.at_level(logging.WARNING, logger="sisr"):
        assert main(["plot-log", str(tmp_path), "-o", str(out), "--log-loss", "--smooth", "0.5"]) == 0
    assert "log.jsonl:" in caplog.text
    with Image.open(out) as image:
        assert image.format == "PNG"
        size = image.size
    # 4 charts (loss, PSNR, learning rate is constant so left out, steps per s) in 2 columns; title on top.
    reference, layout = plot_curves(log_series(_run_records()), log_loss=True, title="x")
    assert size == layout.size == reference.size
    assert len(layout.plot_areas) == 3
    assert main(["plot-log", str(tmp_path), "-o", str(out)]) == 1  # exists, no --overwrite


def test_plot_log_of_an_empty_log_is_an_error(tmp_path, capsys):
    (tmp_path / "log.jsonl").write_text("", encoding="utf-8")
    assert main(["plot-log", str(tmp_path), "-o", str(tmp_path / "c.png")]) == 1
    assert "no records" in capsys.readouterr().err
    with pytest.raises(SisrError, match="no numeric fields"):
        _write_log(tmp_path / "log.jsonl", [{"event": "start", "step": 0}])
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


def test_successive_stages_share_one_step_axis(tmp_path):
    """A run trained on from another's weights: its steps continue where the first run's ended."""
    first = _write_log(tmp_path / "first.jsonl", _run_records(range(100, 1001, 100)))
    (tmp_path / "second").mkdir()
    _write_log(tmp_path / "second" / "log.jsonl", _run_records(range(100, 501, 100)))
    chained = chain_stages([read_log(first), read_log(tmp_path / "second")])
    series = {(s.event, s.name): s for s in log_series(chained)}
    assert series[("val", "psnr")].steps == [500, 1000, 1500]  # 500 and 1000, then the second run's 500
    loss = series[("train", "loss")]
    assert loss.steps == [float(step) for step in range(100, 1501, 100)]
    assert loss.values[10] == pytest.approx(1 / 100)  # the second run's first record, at step 1000 + 100

    out = tmp_path / "stages.png"
    assert main(["plot-log", str(first), str(tmp_path / "second"), "-o", str(out)]) == 0
    _, layout = plot_curves(list(series.values()), title="x")
    with Image.open(out) as image:
        assert image.size == layout.size
    assert plot_log([first, tmp_path / "second"]).size == layout.size
    with pytest.raises(SisrError, match="no such training log"):
        plot_log([first, tmp_path / "missing"])
