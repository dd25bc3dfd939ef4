"""Pictures a person can judge: side-by-side crops of SR results, and training curves.

Everything is drawn with Pillow alone (no matplotlib), so the figures work in
the base install and come out the same on every machine.

* Comparison figures: the same crop of every image (LR enlarged with nearest
  neighbour so its pixels stay visible, bicubic, each model, HR), each labelled
  with PSNR / SSIM of the *whole* image, beside a small overview that shows
  where the crop lies. `compare_models` runs the models; `compose_comparison`
  only lays out images that are already made.
* Training curves: `read_log` / `log_series` turn a run's `log.jsonl` into
  series and `plot_curves` draws them as line charts, one per quantity
  (loss, PSNR, SSIM, learning rate, ...), with nice ticks and a legend.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from .errors import SisrError
from .image_io import to_rgb8

if TYPE_CHECKING:
    from PIL import Image, ImageFont
    from torch import nn

log = logging.getLogger("sisr")

BACKGROUND = (255, 255, 255)
TEXT_COLOR = (20, 20, 20)
MUTED_TEXT_COLOR = (90, 90, 90)
FRAME_COLOR = (200, 200, 200)
CROP_BOX_COLOR = (230, 25, 25)
# Tableau 10: distinguishable, and kind to the common colour-vision deficiencies.
PALETTE = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
]


# --------------------------------------------------------------------------- text


@functools.cache
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at `size` px: no font files to find, the same text on every machine.

    Sized fonts need Pillow >= 10.1 with FreeType; older ones get the small bitmap font.
    """
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def text_width(text: str, typeface: Any) -> int:
    return int(math.ceil(typeface.getlength(text)))


def line_height(typeface: Any) -> int:
    """Height of one line of text including descenders, so stacked lines never touch."""
    try:
        ascent, descent = typeface.getmetrics()
        return int(ascent + descent)
    except AttributeError:  # the bitmap fallback font
        box = typeface.getbbox("Hg")
        return int(box[3] - box[1]) + 2


def wrap_text(text: str, typeface: Any, width: int) -> list[str]:
    """Greedy word wrap to `width` pixels; a single over-long word gets a line of its own."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        current = ""
        for word in paragraph.split(" "):
            candidate = f"{current} {word}" if current else word
            if current and text_width(candidate, typeface) > width:
                lines.append(current)
                current = word
            else:
                current = candidate
        lines.append(current)
    return lines


# ------------------------------------------------------------- comparison figures


class CropBox(NamedTuple):
    """A rectangle in HR pixels: left, top, width, height."""

    x: int
    y: int
    width: int
    height: int

    def slices(self) -> tuple[slice, slice]:
        return slice(self.y, self.y + self.height), slice(self.x, self.x + self.width)


@dataclass
class Panel:
    """One image of a comparison, at the HR frame's size (the LR panel already enlarged)."""

    title: str
    image: np.ndarray
    psnr: float | None = None
    ssim: float | None = None
    note: str = ""  # the second line where there are no metrics, e.g. the input's size

    @property
    def label(self) -> str:
        return metrics_label(self.psnr, self.ssim) or self.note


def metrics_label(psnr: float | None, ssim: float | None) -> str:
    """The second line under a panel: PSNR to 0.01 dB and SSIM to 4 places, as papers print them."""
    parts = []
    if psnr is not None:
        parts.append("PSNR inf" if math.isinf(psnr) else f"PSNR {psnr:.2f} dB")
    if ssim is not None:
        parts.append(f"SSIM {ssim:.4f}")
    return " / ".join(parts)


def parse_crop(text: str) -> CropBox:
    """`X,Y,W,H` (HR pixels) as typed after --crop."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 4:
        raise SisrError(f"--crop {text!r}: expected X,Y,W,H as four integers in HR pixels, e.g. 100,80,128,128")
    return CropBox(*values)


def check_crop(crop: CropBox, width: int, height: int) -> CropBox:
    """A crop must lie inside the image and be at least one pixel: else say which edge is wrong."""
    x, y, w, h = crop
    if w < 1 or h < 1:
        raise SisrError(f"crop {x},{y},{w},{h}: width and height must be positive")
    if x < 0 or y < 0 or x + w > width or y + h > height:
        raise SisrError(
            f"crop {x},{y},{w},{h} (x, y, width, height) reaches outside the {width}x{height} HR image "
            f"(right edge {x + w}, bottom edge {y + h})"
        )
    return CropBox(int(x), int(y), int(w), int(h))


def default_crop_size(width: int, height: int, align: int = 1) -> tuple[int, int]:
    """A square a quarter of the shorter side, 32 to 160 px, a multiple of `align`: small enough to zoom."""
    side = min(160, max(32, min(width, height) // 4))
    side = max(align, side // align * align)
    return min(side, width // align * align or width), min(side, height // align * align or height)


def centred_crop(width: int, height: int, crop_width: int, crop_height: int, align: int = 1) -> CropBox:
    x = (width - crop_width) // 2 // align * align
    y = (height - crop_height) // 2 // align * align
    return CropBox(x, y, crop_width, crop_height)


def gradient_energy(image: np.ndarray) -> np.ndarray:
    """Squared gradient magnitude of the luma, per pixel: where the detail is that SR has to restore."""
    pixels = image.astype(np.float64)
    if pixels.ndim == 3:
        pixels = pixels[..., :3] @ np.array([0.299, 0.587, 0.114])[: pixels.shape[2]]
    energy = np.zeros(pixels.shape, dtype=np.float64)
    energy[:, :-1] += np.diff(pixels, axis=1) ** 2
    energy[:-1, :] += np.diff(pixels, axis=0) ** 2
    return energy


def most_detailed_crop(image: np.ndarray, crop_width: int, crop_height: int, align: int = 1) -> CropBox:
    """The crop with the highest gradient energy, searched on a grid of `align`-multiples.

    Flat sky makes every method look alike; edges and texture are where
    networks differ, so that is what a comparison should show by default.
    """
    height, width = image.shape[:2]
    integral = np.zeros((height + 1, width + 1), dtype=np.float64)
    integral[1:, 1:] = gradient_energy(image).cumsum(0).cumsum(1)
    stride = max(align, min(crop_width, crop_height) // 8 // align * align)
    ys = np.arange(0, height - crop_height + 1, stride)
    xs = np.arange(0, width - crop_width + 1, stride)
    y0, x0 = np.meshgrid(ys, xs, indexing="ij")
    sums = (
        integral[y0 + crop_height, x0 + crop_width]
        - integral[y0, x0 + crop_width]
        - integral[y0 + crop_height, x0]
        + integral[y0, x0]
    )
    row, col = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return CropBox(int(xs[col]), int(ys[row]), crop_width, crop_height)


def nearest_enlarge(image: np.ndarray, factor: int) -> np.ndarray:
    """Each pixel becomes a factor x factor block: shows pixels as they are, adds nothing."""
    if factor == 1:
        return image
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def _to_pil(image: np.ndarray) -> Image.Image:
    from PIL import Image

    pixels = np.ascontiguousarray(image)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    return Image.fromarray(pixels).convert("RGB")


@dataclass
class ComparisonLayout:
    """Where everything goes, computed before drawing (and checked by the tests)."""

    size: tuple[int, int]
    columns: int
    image_boxes: list[tuple[int, int, int, int]]  # (left, top, width, height) of each cell's image, overview first
    caption_top: int
    caption_lines: list[str] = field(default_factory=list)


# Spacing of comparison figures, in pixels.
MARGIN = 16
GAP = 14
LABEL_GAP = 6
TITLE_SIZE = 16
LABEL_SIZE = 14
CAPTION_SIZE = 14


def default_columns(cells: int) -> int:
    """Up to five cells in one row; more are spread evenly over as few rows as needed."""
    rows = math.ceil(cells / 5)
    return math.ceil(cells / rows)


def overview_size(frame_width: int, frame_height: int, box_width: int, box_height: int) -> tuple[int, int]:
    """The whole image shrunk to fit a panel's box, aspect ratio kept."""
    ratio = min(box_width / frame_width, box_height / frame_height)
    return max(1, round(frame_width * ratio)), max(1, round(frame_height * ratio))


def comparison_layout(
    panel_count: int,
    panel_size: tuple[int, int],
    *,
    overview: bool,
    columns: int | None,
    labels: Sequence[str],
    caption: str | None,
) -> ComparisonLayout:
    """Cells of equal size in a grid: image on top, then the title and a metrics line.

    A cell is as wide as its image or its widest label, whichever is wider, so
    text never runs into the next cell.
    """
    title_font, label_font, caption_font = font(TITLE_SIZE), font(LABEL_SIZE), font(CAPTION_SIZE)
    cells = panel_count + (1 if overview else 0)
    columns = max(1, min(columns or default_columns(cells), cells))
    rows = math.ceil(cells / columns)
    image_width, image_height = panel_size
    cell_width = max(
        [
            image_width,
            *(text_width(t, title_font) for t in labels[::2]),
            *(text_width(t, label_font) for t in labels[1::2]),
        ]
    )
    text_height = line_height(title_font) + line_height(label_font)
    cell_height = image_height + LABEL_GAP + text_height
    width = 2 * MARGIN + columns * cell_width + (columns - 1) * GAP
    boxes = []
    for index in range(cells):
        row, col = divmod(index, columns)
        left = MARGIN + col * (cell_width + GAP) + (cell_width - image_width) // 2
        top = MARGIN + row * (cell_height + GAP)
        boxes.append((left, top, image_width, image_height))
    caption_top = MARGIN + rows * cell_height + (rows - 1) * GAP + GAP
    caption_lines = wrap_text(caption, caption_font, width - 2 * MARGIN) if caption else []
    height = caption_top + len(caption_lines) * line_height(caption_font) + MARGIN - (0 if caption_lines else GAP)
    return ComparisonLayout((width, height), columns, boxes, caption_top, caption_lines)


def compose_comparison(
    panels: Sequence[Panel],
    crop: CropBox,
    *,
    zoom: int = 1,
    columns: int | None = None,
    overview: np.ndarray | None = None,
    overview_title: str = "whole image",
    caption: str | None = None,
) -> Image.Image:
    """Lay out the same crop of every panel, enlarged `zoom` x with nearest neighbour.

    `overview` (any resolution of the same picture) is shown first, shrunk to a
    panel's size, with the crop outlined. All panels must share one frame size.
    """
    from PIL import Image, ImageDraw

    if not panels:
        raise SisrError("a comparison needs at least one image")
    frame_height, frame_width = panels[0].image.shape[:2]
    for panel in panels:
        if panel.image.shape[:2] != (frame_height, frame_width):
            raise SisrError(
                f"panel {panel.title!r} is {panel.image.shape[1]}x{panel.image.shape[0]}, "
                f"the others {frame_width}x{frame_height}"
            )
    crop = check_crop(crop, frame_width, frame_height)
    if zoom < 1:
        raise SisrError(f"zoom {zoom}: must be 1 or more")
    panel_size = (crop.width * zoom, crop.height * zoom)
    labels: list[str] = []
    if overview is not None:
        labels += [overview_title, f"{frame_width}x{frame_height}, crop outlined"]
    for panel in panels:
        labels += [panel.title, panel.label]
    layout = comparison_layout(
        len(panels), panel_size, overview=overview is not None, columns=columns, labels=labels, caption=caption
    )
    figure = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(figure)
    boxes = iter(layout.image_boxes)
    if overview is not None:
        left, top, width, height = next(boxes)
        thumb_width, thumb_height = overview_size(frame_width, frame_height, width, height)
        thumb = _to_pil(overview).resize((thumb_width, thumb_height), Image.Resampling.LANCZOS)
        thumb_left, thumb_top = left + (width - thumb_width) // 2, top + (height - thumb_height) // 2
        figure.paste(thumb, (thumb_left, thumb_top))
        sx, sy = thumb_width / frame_width, thumb_height / frame_height
        outline = [
            thumb_left + crop.x * sx,
            thumb_top + crop.y * sy,
            thumb_left + (crop.x + crop.width) * sx - 1,
            thumb_top + (crop.y + crop.height) * sy - 1,
        ]
        draw.rectangle(outline, outline=CROP_BOX_COLOR, width=2)
    for panel in panels:
        left, top, width, height = next(boxes)
        crop_pixels = nearest_enlarge(panel.image[crop.slices()], zoom)
        figure.paste(_to_pil(crop_pixels), (left, top))
    title_font, label_font, caption_font = font(TITLE_SIZE), font(LABEL_SIZE), font(CAPTION_SIZE)
    for (left, top, width, height), title, label in zip(layout.image_boxes, labels[::2], labels[1::2]):
        draw.rectangle([left - 1, top - 1, left + width, top + height], outline=FRAME_COLOR)
        centre = left + width // 2
        text_top = top + height + LABEL_GAP
        draw.text((centre, text_top), title, fill=TEXT_COLOR, font=title_font, anchor="ma")
        draw.text(
            (centre, text_top + line_height(title_font)), label, fill=MUTED_TEXT_COLOR, font=label_font, anchor="ma"
        )
    for number, line in enumerate(layout.caption_lines):
        draw.text(
            (MARGIN, layout.caption_top + number * line_height(caption_font)),
            line,
            fill=MUTED_TEXT_COLOR,
            font=caption_font,
        )
    return figure


def hr_to_lr(hr: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """The standard SR degradation: crop HR at the top-left to a multiple of `scale`, MATLAB bicubic down."""
    from .imaging import bicubic_downgrade

    return bicubic_downgrade(hr, scale)


@dataclass
class Comparison:
    """A comparison figure and what it was made from."""

    figure: Image.Image
    panels: list[Panel]
    crop: CropBox
    zoom: int
    scale: int


def _pick_crop(
    reference: np.ndarray, crop: CropBox | str | None, crop_size: tuple[int, int] | None, scale: int
) -> CropBox:
    height, width = reference.shape[:2]
    if isinstance(crop, CropBox) or (isinstance(crop, tuple) and len(crop) == 4):
        return check_crop(CropBox(*crop), width, height)
    if crop_size is not None:
        crop_width, crop_height = crop_size
        if not (0 < crop_width <= width and 0 < crop_height <= height):
            raise SisrError(f"crop size {crop_width}x{crop_height} does not fit in the {width}x{height} HR image")
    else:
        crop_width, crop_height = default_crop_size(width, height, scale)
    if crop in (None, "detail"):
        return most_detailed_crop(reference, crop_width, crop_height, align=scale)
    if crop in ("centre", "center"):
        return centred_crop(width, height, crop_width, crop_height, align=scale)
    raise SisrError(f"crop {crop!r}: expected X,Y,W,H, 'detail' or 'centre'")


def default_zoom(crop: CropBox) -> int:
    """Enlarge small crops to about 256 px so single pixels are visible."""
    return max(1, 256 // max(crop.width, crop.height))


def torch_module() -> type:
    from torch import nn

    return nn.Module


def compare_models(
    image: np.ndarray,
    models: Sequence[str | os.PathLike | nn.Module],
    scale: int,
    *,
    lr_input: bool = False,
    hr: np.ndarray | None = None,
    crop: CropBox | str | None = None,
    crop_size: tuple[int, int] | None = None,
    zoom: int | None = None,
    columns: int | None = None,
    overview: bool = True,
    caption: str | None = None,
    names: Sequence[str] | None = None,
    tile: int | None = None,
    tile_overlap: int | None = None,
    precision: str = "fp32",
    device: str = "auto",
) -> Comparison:
    """Upscale one image with bicubic and each model, and lay out the same crop of each.

    `image` is HR (the LR input is made with the MATLAB bicubic downgrade)
    unless `lr_input`; then `hr`, if given, is the matching ground truth. With
    HR known, each panel is labelled with PSNR / SSIM of the whole image (Y
    channel, `scale` pixels of border excluded, as the papers measure).
    `crop` is a CropBox in HR pixels, "detail" (default: the most detailed
    region, by gradient energy) or "centre".
    """
    from .evaluation import model_label
    from .imaging import psnr, ssim
    from .inference import upscale
    from .weights import resolve_model

    if scale < 1:
        raise SisrError(f"scale {scale}: must be a positive integer")
    image = to_rgb8(image)
    if lr_input:
        lr = image
        if hr is not None:
            hr = to_rgb8(hr)
            want = (lr.shape[0] * scale, lr.shape[1] * scale)
            if hr.shape[0] < want[0] or hr.shape[1] < want[1]:
                raise SisrError(
                    f"HR image is {hr.shape[1]}x{hr.shape[0]}, smaller than x{scale} the "
                    f"{lr.shape[1]}x{lr.shape[0]} LR image ({want[1]}x{want[0]})"
                )
            hr = hr[: want[0], : want[1]]  # the benchmark convention: HR cropped at the top-left
    else:
        hr, lr = hr_to_lr(image, scale)

    model_names = list(names) if names is not None else [model_label(m) for m in models]
    if len(model_names) != len(models):
        raise SisrError(f"{len(model_names)} names for {len(models)} models")
    entries = [("bicubic", "bicubic")] + [(m, n) for m, n in zip(models, model_names) if str(m) != "bicubic"]

    lr_enlarged = nearest_enlarge(lr, scale)
    # Settle the crop before running any network: a typo in --crop should not cost a 2K upscale.
    box = _pick_crop(hr if hr is not None else lr_enlarged, crop, crop_size, scale)
    panels = [Panel(f"LR (nearest x{scale})", lr_enlarged, note=f"{lr.shape[1]}x{lr.shape[0]} input")]
    for model_name, title in entries:
        model = model_name if isinstance(model_name, torch_module()) else resolve_model(model_name, scale)
        sr = upscale(model, lr, tile=tile, tile_overlap=tile_overlap, precision=precision, device=device)
        panel = Panel(title, sr)
        if hr is not None:
            panel.psnr = float(psnr(sr, hr, crop_border=scale, y_channel=True))
            try:
                panel.ssim = float(ssim(sr, hr, crop_border=scale, y_channel=True))
            except SisrError as error:  # an image smaller than SSIM's window: PSNR alone still says something
                log.warning("%s: no SSIM (%s)", title, error)
        panels.append(panel)
    if hr is not None:
        panels.append(Panel("HR (original)", hr, note=f"{hr.shape[1]}x{hr.shape[0]} ground truth"))

    reference = hr if hr is not None else panels[1].image
    zoom = zoom or default_zoom(box)
    if caption is None:
        caption = comparison_caption(box, zoom, scale, with_metrics=hr is not None)
    figure = compose_comparison(
        panels, box, zoom=zoom, columns=columns, overview=reference if overview else None, caption=caption
    )
    return Comparison(figure, panels, box, zoom, scale)


def comparison_caption(crop: CropBox, zoom: int, scale: int, *, with_metrics: bool) -> str:
    """Say what the reader is looking at: which crop, how enlarged, and where the numbers come from."""
    text = f"x{scale} super-resolution. Crop {crop.width}x{crop.height} at ({crop.x}, {crop.y}) in HR pixels"
    text += f", shown x{zoom} (nearest neighbour)." if zoom > 1 else "."
    if with_metrics:
        text += (
            f" PSNR / SSIM of the whole image, not the crop: Y channel (BT.601), "
            f"{scale}-pixel border excluded. LR made with MATLAB bicubic."
        )
    else:
        text += " No ground truth, so no PSNR / SSIM."
    return text


def write_figure(figure: Image.Image, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Save in the format the suffix names (PNG for an unknown one), atomically: never half a figure."""
    from PIL import Image

    from .files import atomic_path

    path = Path(path)
    image_format = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    with atomic_path(path, overwrite=overwrite) as tmp:
        figure.save(tmp, format=image_format)
    return path


# ------------------------------------------------------------------ training logs


# Fields that are not measurements of the model: never plotted.
BOOKKEEPING_FIELDS = {"step", "time", "seconds", "images", "epoch", "world_size", "event", "set"}
PLOTTED_EVENTS = {"train", "val"}


@dataclass
class Series:
    """One curve: a field of one kind of record (and one validation set) against step."""

    event: str
    name: str
    set_name: str | None
    steps: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    @property
    def label(self) -> str:
        text = f"{self.event} {self.name}"
        return f"{text} ({self.set_name})" if self.set_name else text

    @property
    def chart(self) -> str:
        return chart_key(self.name)


def chart_key(name: str) -> str:
    """Which chart a field belongs to: quantities in the same unit share one."""
    lowered = name.lower()
    for key in ("loss", "psnr", "ssim"):
        if key in lowered:
            return key
    if lowered in ("lr", "learning_rate"):
        return "lr"
    return lowered


CHART_TITLES = {"loss": "loss", "psnr": "PSNR (dB)", "ssim": "SSIM", "lr": "learning rate"}
CHART_ORDER = ["loss", "psnr", "ssim", "lr"]


def find_log(path: str | os.PathLike) -> Path:
    """A run folder means its `log.jsonl`."""
    path = Path(path)
    if path.is_dir():
        path = path / "log.jsonl"
    if not path.is_file():
        raise SisrError(f"{path}: no such training log (give a run folder or its log.jsonl)")
    return path


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a JSON-lines log; lines that are not JSON objects are skipped with a warning.

    A run killed mid-write leaves a torn last line; that should not cost the
    plot of everything before it.
    """
    path = find_log(path)
    records = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                log.warning("%s:%d: skipped, not JSON (%s)", path, number, error.msg)
                continue
            if not isinstance(record, dict):
                log.warning("%s:%d: skipped, not a JSON object", path, number)
                continue
            records.append(record)
    if not records:
        raise SisrError(f"{path}: the training log holds no records")
    return records


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _event(record: dict[str, Any]) -> str:
    event = record.get("event")
    if isinstance(event, str):
        return event
    return "val" if any(str(k).startswith("val") for k in record) else "train"


def log_series(records: Iterable[dict[str, Any]], fields: Sequence[str] | None = None) -> list[Series]:
    """Every plottable curve in the records: numeric fields of train/val records against "step".

    A field is plotted when it varies, or when it is a loss or metric (a
    single validation point is still worth showing). Bookkeeping (time,
    counters, the running best) is left out. `fields` keeps only those names.
    """
    series: dict[tuple[str, str, str | None], Series] = {}
    for record in records:
        step = _number(record.get("step"))
        event = _event(record)
        if step is None or event not in PLOTTED_EVENTS:
            continue
        set_name = record.get("set") if isinstance(record.get("set"), str) else None
        for name, raw in record.items():
            value = _number(raw)
            if value is None or name in BOOKKEEPING_FIELDS or name.startswith("best_"):
                continue
            if fields is not None and name not in fields:
                continue
            key = (event, name, set_name)
            if key not in series:
                series[key] = Series(event, name, set_name)
            series[key].steps.append(step)
            series[key].values.append(value)
    kept = []
    for curve in series.values():
        headline = chart_key(curve.name) in ("loss", "psnr", "ssim")
        if headline or len(set(curve.values)) > 1:
            kept.append(curve)
    return kept


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


class _Canvas:
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
    canvas: _Canvas,
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
            faint = tuple(int(c + (255 - c) * 0.7) for c in color)
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
    size: tuple[int, int]
    chart_boxes: list[tuple[int, int]]  # top-left corner of each chart
    plot_areas: list[tuple[float, float, float, float]] = field(default_factory=list)


def curves_layout(
    charts: int, columns: int | None, chart_size: tuple[int, int] = CHART_SIZE, title: bool = False
) -> CurvesLayout:
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
    canvas = _Canvas(*layout.size)
    if title:
        canvas.text(layout.size[0] / 2, MARGIN, title, CHART_TITLE_FONT + 2, anchor="ma")
    for spec, (left, top) in zip(specs, layout.chart_boxes):
        area = draw_chart(canvas, left, top, spec, (x_low, x_high), chart_size, smooth=smooth)
        layout.plot_areas.append(area)
    return canvas.finish(), layout


def chain_stages(stages: Sequence[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The records of successive runs (a run continued from another's weights) on one step axis.

    Each stage's steps are shifted by the last step of the stages before it.
    """
    chained: list[dict[str, Any]] = []
    offset = 0.0
    for records in stages:
        last = 0.0
        for record in records:
            step = _number(record.get("step"))
            if step is not None:
                last = max(last, step)
                record = {**record, "step": step + offset}
            chained.append(record)
        offset += last
    return chained


def plot_log(
    path: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    fields: Sequence[str] | None = None,
    log_loss: bool = False,
    smooth: float = 0.0,
    columns: int | None = None,
    title: str | None = None,
) -> Image.Image:
    """Training curves of a run folder or its `log.jsonl`, as one image.

    Several runs are drawn as successive stages on one step axis (the second
    starting where the first ended), e.g. a network trained on from another
    run's weights.
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths:
        raise SisrError("no training log given")
    log_paths = [find_log(one) for one in paths]
    curves = log_series(chain_stages([read_log(one) for one in log_paths]), fields=fields)
    if not curves:
        wanted = f" among {', '.join(fields)}" if fields else ""
        raise SisrError(f"{', '.join(map(str, log_paths))}: no numeric fields with a step{wanted} to plot")
    if title is None:
        title = " + ".join(one.parent.name if one.name == "log.jsonl" else one.stem for one in log_paths)
    image, _ = plot_curves(curves, log_loss=log_loss, smooth=smooth, columns=columns, title=title)
    return image
