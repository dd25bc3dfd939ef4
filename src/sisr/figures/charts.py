"""Line charts of training curves, drawn with Pillow: ticks, axes, legends, one chart per quantity.

Drawing only: the curves come in as `Series` (see `sisr.figures.logs`), and
nothing here needs torch, so plotting a log stays quick and light.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SisrError
from .style import BACKGROUND, GAP, MARGIN, MUTED_TEXT_COLOR, PALETTE, TEXT_COLOR, font

if TYPE_CHECKING:
    from PIL import Image

    from .logs import Series

CHART_TITLES = {"loss": "loss", "psnr": "PSNR (dB)", "ssim": "SSIM", "lr": "learning rate"}
CHART_ORDER = ["loss", "psnr", "ssim", "lr"]

# Nice ticks: steps of 1, 2 or 5 times a power of ten.


def nice_step(span: float, max_ticks: int = 6) -> float:
    """The smallest 1/2/5 x 10^k step that puts at most `max_ticks` ticks on `span`."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / max(1, max_ticks - 1)
    power = 10.0 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 2.5, 5, 10):
        if multiple == 2.5 and power < 1:
            continue  # 0.25-steps need more digits than the values deserve
        if multiple * power >= raw * (1 - 1e-9):
            return multiple * power
    return 10 * power


def nice_ticks(low: float, high: float, max_ticks: int = 6) -> list[float]:
    """Round values inside [low, high], e.g. 0..37 -> 0, 10, 20, 30."""
    if high < low:
        low, high = high, low
    if high == low:
        return [low]
    step = nice_step(high - low, max_ticks)
    first = math.ceil(low / step - 1e-9)
    last = math.floor(high / step + 1e-9)
    return [_clean(i * step) for i in range(first, last + 1)]


def _clean(value: float) -> float:
    """Drop float noise such as 0.30000000000000004 so labels and comparisons are exact."""
    return float(f"{value:.12g}") if value else 0.0


def log_ticks(low: float, high: float) -> list[float]:
    """Decades inside [low, high] on a log axis; 2 and 5 between them when fewer than two decades show."""
    if low <= 0:
        raise ValueError("log ticks need a positive range")
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    decades = [10.0**k for k in range(first, last + 1)]
    inside = [t for t in decades if low * (1 - 1e-9) <= t <= high * (1 + 1e-9)]
    if len(inside) >= 2:
        return [_clean(t) for t in inside]
    ticks = [d * m for d in decades for m in (1, 2, 5)]
    inside = [_clean(t) for t in ticks if low * (1 - 1e-9) <= t <= high * (1 + 1e-9)]
    if len(inside) >= 2:
        return inside
    return [_clean(t) for t in (low, high)]


def format_tick(value: float, step: float | None = None, largest: float | None = None) -> str:
    """Short tick labels: 300k for large steps, 1e-4 for tiny values, as many decimals as the spacing needs.

    `largest` is the biggest tick on the axis, so one axis never mixes 5000 with 10k.
    """
    if value == 0:
        return "0"
    magnitude = abs(value)
    largest = abs(largest) if largest is not None else magnitude
    if largest >= 10_000 and (step is None or step >= 1000):
        divisor, suffix = (1e6, "M") if largest >= 1e6 and (step is None or step >= 1e5) else (1e3, "k")
        return f"{_clean(value / divisor):g}{suffix}"
    if largest < 1e-3:
        mantissa, exponent = f"{value:.2e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    if step is None:
        return f"{value:.3g}"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    if _clean(step * 10**decimals) % 1:
        decimals += 1  # steps such as 0.25 or 2.5
    return f"{value:.{decimals}f}"


def ema(values: Sequence[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average, debiased at the start."""
    if not 0 <= weight < 1:
        raise SisrError(f"smoothing {weight}: must be in [0, 1)")
    out, running = [], 0.0
    for count, value in enumerate(values, start=1):
        running = weight * running + (1 - weight) * value
        out.append(running / (1 - weight**count))
    return out


class Canvas:
    """A drawing surface at `supersample` x the final size: lines come out antialiased when reduced."""

    def __init__(self, width: int, height: int, supersample: int = 3) -> None:
        from PIL import Image, ImageDraw

        self.factor = supersample
        self.image = Image.new("RGB", (width * supersample, height * supersample), BACKGROUND)
        self.draw = ImageDraw.Draw(self.image)
        self._fonts: dict[int, Any] = {}

    def font(self, size: int) -> Any:
        if size not in self._fonts:
            self._fonts[size] = font(size * self.factor)
        return self._fonts[size]

    def text_width(self, text: str, size: int) -> float:
        return self.font(size).getlength(text) / self.factor

    def _xy(self, points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
        return [(x * self.factor, y * self.factor) for x, y in points]

    def line(self, points: Sequence[tuple[float, float]], color: tuple[int, int, int], width: float = 1) -> None:
        if len(points) >= 2:
            self.draw.line(self._xy(points), fill=color, width=max(1, round(width * self.factor)), joint="curve")

    def dot(self, x: float, y: float, radius: float, color: tuple[int, int, int]) -> None:
        f = self.factor
        self.draw.ellipse([(x - radius) * f, (y - radius) * f, (x + radius) * f, (y + radius) * f], fill=color)

    def rectangle(self, box: Sequence[float], outline: Any = None, fill: Any = None, width: float = 1) -> None:
        self.draw.rectangle(
            [v * self.factor for v in box], outline=outline, fill=fill, width=max(1, round(width * self.factor))
        )

    def text(self, x: float, y: float, text: str, size: int, color: Any = TEXT_COLOR, anchor: str = "la") -> None:
        self.draw.text((x * self.factor, y * self.factor), text, fill=color, font=self.font(size), anchor=anchor)

    def finish(self) -> Image.Image:
        return self.image.reduce(self.factor)


# Chart geometry, in final pixels.
CHART_SIZE = (600, 340)
CHART_FONT = 13
CHART_TITLE_FONT = 15
AXIS_COLOR = (60, 60, 60)
GRID_COLOR = (228, 228, 228)


@dataclass
class ChartSpec:
    """One chart: its title, curves, and whether its y axis is logarithmic."""

    key: str
    title: str
    series: list[Series]
    log_y: bool = False


def chart_specs(series: Sequence[Series], log_loss: bool = False) -> list[ChartSpec]:
    """Group curves by chart (loss, PSNR, SSIM, learning rate, then the rest in order of appearance)."""
    groups: dict[str, list[Series]] = {}
    for curve in series:
        groups.setdefault(curve.chart, []).append(curve)
    keys = [k for k in CHART_ORDER if k in groups] + [k for k in groups if k not in CHART_ORDER]
    specs = []
    for key in keys:
        curves = groups[key]
        positive = all(v > 0 for c in curves for v in c.values)
        specs.append(
            ChartSpec(
                key, CHART_TITLES.get(key, key.replace("_", " ")), curves, log_y=log_loss and key == "loss" and positive
            )
        )
    return specs


def _y_range(values: Sequence[float], log_y: bool) -> tuple[float, float]:
    low, high = min(values), max(values)
    if log_y:
        a, b = math.log10(low), math.log10(high)
        pad = (b - a) * 0.05 or 0.1
        return 10 ** (a - pad), 10 ** (b + pad)
    pad = (high - low) * 0.06 or (abs(high) * 0.05 or 1.0)
    return low - pad, high + pad


def best_index(curve: Series, chart: str) -> int | None:
    """Where a validation metric peaks: the checkpoint a user would keep."""
    if curve.event != "val" or chart not in ("psnr", "ssim") or not curve.values:
        return None
    return int(np.argmax(curve.values))


def legend_label(curve: Series, chart: str) -> str:
    """The curve's name, and for validation metrics the best value and its step (marked on the curve)."""
    best = best_index(curve, chart)
    if best is None:
        return curve.label
    value = format_tick(curve.values[best], 0.01 if chart == "psnr" else 0.0001)
    return f"{curve.label}: best {value} at step {curve.steps[best]:g}"


def draw_chart(
    canvas: Canvas,
    left: float,
    top: float,
    spec: ChartSpec,
    x_range: tuple[float, float],
    size: tuple[int, int] = CHART_SIZE,
    smooth: float = 0.0,
) -> tuple[float, float, float, float]:
    """One line chart with frame, grid, ticks, axis labels and a legend; returns the plot area."""
    width, height = size
    legend_entries = [legend_label(c, spec.key) for c in spec.series]
    # Legend entries flow in rows above the plot, so they never hide a curve.
    legend_rows: list[list[str]] = [[]]
    row_width, available = 0.0, width - 80
    for label in legend_entries:
        entry = 26 + canvas.text_width(label, CHART_FONT) + 14
        if legend_rows[-1] and row_width + entry > available:
            legend_rows.append([])
            row_width = 0.0
        legend_rows[-1].append(label)
        row_width += entry
    line = CHART_FONT + 6
    plot_left, plot_right = left + 66, left + width - 14
    plot_top = top + CHART_TITLE_FONT + 10 + len(legend_rows) * line + 4
    plot_bottom = top + height - 40

    values = [v for c in spec.series for v in c.values]
    y_low, y_high = _y_range(values, spec.log_y)
    x_low, x_high = x_range

    def to_x(value: float) -> float:
        return plot_left + (value - x_low) / ((x_high - x_low) or 1) * (plot_right - plot_left)

    def to_y(value: float) -> float:
        if spec.log_y:
            fraction = (math.log10(value) - math.log10(y_low)) / (math.log10(y_high) - math.log10(y_low))
        else:
            fraction = (value - y_low) / ((y_high - y_low) or 1)
        return plot_bottom - fraction * (plot_bottom - plot_top)

    title = f"{spec.title} (log scale)" if spec.log_y else spec.title
    canvas.text(left + width / 2, top, title, CHART_TITLE_FONT, anchor="ma")
    y_ticks = log_ticks(y_low, y_high) if spec.log_y else nice_ticks(y_low, y_high, 6)
    y_step = None if spec.log_y or len(y_ticks) < 2 else y_ticks[1] - y_ticks[0]
    x_ticks = nice_ticks(x_low, x_high, 7)
    x_step = x_ticks[1] - x_ticks[0] if len(x_ticks) > 1 else None
    for tick in y_ticks:
        y = to_y(tick)
        canvas.line([(plot_left, y), (plot_right, y)], GRID_COLOR)
        canvas.line([(plot_left - 4, y), (plot_left, y)], AXIS_COLOR)
        canvas.text(plot_left - 7, y, format_tick(tick, y_step, max(y_ticks, key=abs)), CHART_FONT, anchor="rm")
    for tick in x_ticks:
        x = to_x(tick)
        canvas.line([(x, plot_top), (x, plot_bottom)], GRID_COLOR)
        canvas.line([(x, plot_bottom), (x, plot_bottom + 4)], AXIS_COLOR)
        canvas.text(x, plot_bottom + 7, format_tick(tick, x_step, max(x_ticks, key=abs)), CHART_FONT, anchor="ma")
    canvas.rectangle([plot_left, plot_top, plot_right, plot_bottom], outline=AXIS_COLOR)
    canvas.text(
        (plot_left + plot_right) / 2,
        plot_bottom + 9 + CHART_FONT + 4,
        "step",
        CHART_FONT,
        color=MUTED_TEXT_COLOR,
        anchor="ma",
    )

    for index, curve in enumerate(spec.series):
        color = PALETTE[index % len(PALETTE)]
        points = [(to_x(s), to_y(v)) for s, v in zip(curve.steps, curve.values)]
        # A schedule is exact, not noisy: smoothing it would only blur the steps.
        if curve.event == "train" and smooth > 0 and len(points) > 2 and spec.key != "lr":
            red, green, blue = (int(c + (255 - c) * 0.7) for c in color)
            faint = (red, green, blue)
            canvas.line(points, faint, 1)
            points = [(to_x(s), to_y(v)) for s, v in zip(curve.steps, ema(curve.values, smooth))]
        canvas.line(points, color, 2)
        if len(points) <= 40 or len(points) == 1:
            for x, y in points:
                canvas.dot(x, y, 2.6, color)
        best = best_index(curve, spec.key)
        if best is not None:
            canvas.dot(*points[best], 4.5, color)

    legend_top = top + CHART_TITLE_FONT + 8
    for row_number, row in enumerate(legend_rows):
        row_width = sum(26 + canvas.text_width(label, CHART_FONT) + 14 for label in row) - 14
        x = left + (width - row_width) / 2
        y = legend_top + row_number * line + line / 2
        for label in row:
            color = PALETTE[legend_entries.index(label) % len(PALETTE)]
            canvas.line([(x, y), (x + 20, y)], color, 2.5)
            canvas.text(x + 26, y, label, CHART_FONT, color=TEXT_COLOR, anchor="lm")
            x += 26 + canvas.text_width(label, CHART_FONT) + 14
    return plot_left, plot_top, plot_right, plot_bottom


@dataclass
class CurvesLayout:
    """Where the charts of a curves figure go (and, once drawn, their plot areas, checked by the tests)."""

    size: tuple[int, int]
    chart_boxes: list[tuple[int, int]]  # top-left corner of each chart
    plot_areas: list[tuple[float, float, float, float]] = field(default_factory=list)


def curves_layout(
    charts: int, columns: int | None, chart_size: tuple[int, int] = CHART_SIZE, title: bool = False
) -> CurvesLayout:
    """Charts of equal size in a grid, two per row unless told (one when there is only one)."""
    columns = max(1, min(columns or (1 if charts == 1 else 2), charts))
    rows = math.ceil(charts / columns)
    header = CHART_TITLE_FONT + 2 + 14 if title else 0
    width = 2 * MARGIN + columns * chart_size[0] + (columns - 1) * GAP
    height = 2 * MARGIN + header + rows * chart_size[1] + (rows - 1) * GAP
    boxes = [
        (MARGIN + (i % columns) * (chart_size[0] + GAP), MARGIN + header + (i // columns) * (chart_size[1] + GAP))
        for i in range(charts)
    ]
    return CurvesLayout((width, height), boxes)


def plot_curves(
    series: Sequence[Series],
    *,
    log_loss: bool = False,
    smooth: float = 0.0,
    columns: int | None = None,
    chart_size: tuple[int, int] = CHART_SIZE,
    title: str | None = None,
) -> tuple[Image.Image, CurvesLayout]:
    """Line charts of training curves against step, one chart per quantity, all sharing the step axis."""
    specs = chart_specs(series, log_loss=log_loss)
    if not specs:
        raise SisrError("nothing to plot: no numeric fields with a step in the log's train/val records")
    steps = [s for c in series for s in c.steps]
    x_low, x_high = min(0.0, min(steps)), max(steps)
    if x_high == x_low:
        x_high = x_low + 1
    layout = curves_layout(len(specs), columns, chart_size, title=bool(title))
    canvas = Canvas(*layout.size)
    if title:
        canvas.text(layout.size[0] / 2, MARGIN, title, CHART_TITLE_FONT + 2, anchor="ma")
    for spec, (left, top) in zip(specs, layout.chart_boxes):
        area = draw_chart(canvas, left, top, spec, (x_low, x_high), chart_size, smooth=smooth)
        layout.plot_areas.append(area)
    return canvas.finish(), layout
