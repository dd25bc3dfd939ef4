"""Charts: round ticks, short labels, smoothing, and curves drawn where their values are."""

from __future__ import annotations

import numpy as np
import pytest

from sisr.errors import SisrError
from sisr.figures.charts import ema, format_tick, legend_label, log_ticks, nice_ticks, plot_curves
from sisr.figures.logs import Series, log_series
from sisr.figures.style import PALETTE


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


def test_legend_names_the_best_validation_value_and_its_step():
    val = Series("val", "psnr", "Set5", steps=[500, 1000, 1500], values=[30.5, 32.0, 31.5])
    assert legend_label(val, "psnr") == "val psnr (Set5): best 32.00 at step 1000"
    train = Series("train", "loss", None, steps=[1, 2], values=[0.2, 0.1])
    assert legend_label(train, "loss") == "train loss"


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
