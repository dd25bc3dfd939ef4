"""The page of `sisr serve` in a real browser: Debian's chromium driven by Playwright.

The server is the real one (`sisr.serve.create_app` under uvicorn on a free
loopback port, with a bearer token the page reads from its URL), the image a
real photo, and what the browser downloads is compared pixel for pixel with
`sisr.upscale` run here on the same file with the same options.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow

CHROMIUM = Path(os.environ.get("SISR_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[1]
TOKEN = "browser-test-token"
# 81 tiles of 16 LR pixels for a 144 x 144 image on the CPU: a run long enough (a second or more) for the
# page's 300 ms polls to see it move.
TILE = 16
SCREENSHOT = REPO / "docs" / "serve-screenshot.png"
SCREENSHOT_MAX_BYTES = 300_000
RUN_TIMEOUT_MS = 240_000  # a run of a few seconds, on a CPU that other processes may be sharing

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (the test extra)")
pytest.importorskip("uvicorn", reason="uvicorn is not installed (the serve extra)")
pytest.importorskip("fastapi", reason="FastAPI is not installed (the serve extra)")
if not CHROMIUM.is_file():
    pytest.skip(
        f"no chromium at {CHROMIUM} (Debian: apt install chromium; or set SISR_CHROMIUM)", allow_module_level=True
    )


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 144 x 144 RGB photo: Set5's bird (MATLAB's x2 LR) where ../shared is present, else skimage's astronaut."""
    shared = Path(os.environ.get("SISR_SHARED") or REPO.parent / "shared")
    bird = shared / "data" / "benchmarks" / "Set5" / "LR_bicubic" / "X2" / "bird.png"
    target = tmp_path_factory.mktemp("photo") / "bird.png"
    if bird.is_file():
        shutil.copyfile(bird, target)
    else:
        from skimage import data

        Image.fromarray(data.astronaut()).resize((144, 144), Image.Resampling.LANCZOS).save(target)
    return target


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """The real app under uvicorn in a thread; its base URL."""
    import uvicorn

    from sisr.serve import create_app
    from sisr.serve.settings import ServeSettings

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # On the CPU whatever the machine has, so a run lasts long enough to watch (and equals a CPU reference).
    settings = ServeSettings(host="127.0.0.1", port=port, token=TOKEN, default_model="default-x2", device="cpu")
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the sisr serve app did not start under uvicorn")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)
    sock.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Page:
    """A fresh browser page on the server, recording every URL it requests and any script error."""

    def __init__(self, browser: Any, base: str, width: int = 1280, height: int = 800) -> None:
        self.base = base
        self.context = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.script_errors: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("pageerror", lambda error: self.script_errors.append(str(error)))

    def open(self, token: str | None = TOKEN) -> Any:
        self.page.goto(self.base + "/" + (f"#token={token}" if token else ""))
        return self.page

    def open_ready(self) -> Any:
        page = self.open()
        page.wait_for_selector("#model-select:not([disabled])")
        return page

    def check_clean(self) -> None:
        """No request to any host but the server (blob: and data: URLs are the page's own), and no script error."""
        elsewhere = [url for url in self.requests if not url.startswith((self.base + "/", "blob:", "data:"))]
        assert elsewhere == [], f"the page fetched from other hosts: {elsewhere}"
        assert self.script_errors == []


@pytest.fixture
def make_page(browser: Any, server: str) -> Iterator[Any]:
    pages: list[Page] = []

    def make(**viewport: int) -> Page:
        pages.append(Page(browser, server, **viewport))
        return pages[-1]

    yield make
    for page in pages:
        page.context.close()


def api_get(base: str, path: str) -> Any:
    import httpx

    return httpx.get(base + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)


def record_progress(page: Any) -> None:
    """Keeps every value the page gives any progress bar (a <progress>'s value attribute reflects it)."""
    page.evaluate(
        """() => {
            window.progressSeen = [];
            const watch = (bar) => new MutationObserver(() => window.progressSeen.push(bar.value))
                .observe(bar, {attributes: true, attributeFilter: ['value']});
            document.querySelectorAll('.job-progress').forEach(watch);
        }"""
    )


def start_one(page: Any, path: Path, model: str, tile: int | None) -> Any:
    """Adds one image, picks the model (and tile), starts; the image's card."""
    page.get_by_label("Model", exact=True).select_option(model)
    page.get_by_label("Tile size", exact=True).fill("" if tile is None else str(tile))
    page.locator("#file-input").set_input_files(str(path))
    card = page.locator(".job-card").last
    record_progress(page)
    page.locator("#start-button").click()
    return card


def decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def transform(locator: Any) -> str:
    return locator.evaluate("img => img.style.transform")


def test_upscale_compare_and_download(make_page: Any, photo: Path, tmp_path: Path) -> None:
    """Upload, progress, before/after slider, zoom and pan, download, a second model, the zip, phone width."""
    import sisr
    from sisr.image_io import read_image

    client = make_page()
    page = client.open_ready()
    # The options in the model list are the server's models, the scale in each label.
    labels = page.locator("#model-select option").all_inner_texts()
    assert "default-x2 · ×2" in labels and "default-x4 · ×4" in labels

    card = start_one(page, photo, "default-x2", TILE)
    card.locator(".job-compare").wait_for(state="visible", timeout=RUN_TIMEOUT_MS)
    assert card.get_attribute("data-state") == "done"
    job_id = card.get_attribute("data-job-id")
    assert job_id

    seen = page.evaluate("window.progressSeen")
    assert any(0 < value < 1 for value in seen), f"the progress bar never showed a partial run: {seen}"
    assert seen == sorted(seen), "the progress bar went backwards"
    assert seen[-1] == 1

    # The sizes and the time taken, as the API reports them.
    job = api_get(client.base, f"/api/v1/jobs/{job_id}").json()
    stats = card.locator(".run-stats").inner_text()
    assert "144 × 144 → 288 × 288 px" in stats
    shown = re.search(r" · ([0-9.]+) s · ", stats)
    assert shown and float(shown[1]) == pytest.approx(job["seconds"], abs=0.05)

    # Before: the input itself, drawn at the result's size with nearest neighbour; after: the result.
    before = card.locator(".compare-before img")
    after = card.locator(".compare-after img")
    assert before.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [144, 144]
    assert after.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [288, 288]
    assert before.evaluate("img => getComputedStyle(img).imageRendering") == "pixelated"
    assert before.evaluate("img => img.getBoundingClientRect().width") == pytest.approx(
        after.evaluate("img => img.getBoundingClientRect().width")
    )

    # The slider moves the divider: dragged to the left end by keyboard, the input is hidden entirely.
    layer = card.locator(".compare-before")
    clip_at_half = layer.evaluate("el => getComputedStyle(el).clipPath")
    card.locator(".compare-slider").focus()
    page.keyboard.press("Home")
    clip_at_start = layer.evaluate("el => getComputedStyle(el).clipPath")
    assert clip_at_start != clip_at_half
    assert card.locator(".compare-viewport").evaluate("el => el.style.getPropertyValue('--pos')") == "0%"
    page.keyboard.press("End")
    assert card.locator(".compare-viewport").evaluate("el => el.style.getPropertyValue('--pos')") == "100%"
    page.keyboard.press("PageDown")  # 10 % steps: back to somewhere in the middle
    assert card.locator(".compare-viewport").evaluate("el => el.style.getPropertyValue('--pos')") == "90%"

    # 100 % pixels: one result pixel per device pixel; then zoom in and pan by keyboard, wheel and drag.
    card.locator(".zoom-actual").click()
    assert card.locator(".zoom-level").inner_text() == "100 %"
    assert after.evaluate("img => img.getBoundingClientRect().width * devicePixelRatio") == pytest.approx(288)
    for _ in range(6):
        card.locator(".zoom-in").click()
    assert card.locator(".zoom-level").inner_text() == f"{round(1.25**6 * 100)} %"
    viewport = card.locator(".compare-viewport")
    viewport.focus()
    placed = transform(after)
    page.keyboard.press("ArrowDown")  # zoomed in, the image is taller than the viewport
    assert transform(after) != placed
    assert transform(before) == transform(after)  # both sides stay aligned
    box = viewport.bounding_box()
    centre = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    placed = transform(after)
    page.mouse.move(*centre)
    page.mouse.down()
    page.mouse.move(centre[0] - 60, centre[1] - 40, steps=4)
    page.mouse.up()
    assert transform(after) != placed
    level = card.locator(".zoom-level").inner_text()
    page.mouse.wheel(0, -300)
    page.wait_for_function(
        "([el, level]) => el.textContent !== level", arg=[card.locator(".zoom-level").element_handle(), level]
    )
    card.locator(".zoom-fit").click()

    # The download is the file the API serves, and equals sisr.upscale with the same options.
    with page.expect_download() as download_info:
        card.locator(".job-download").click()
    download = download_info.value
    assert download.suggested_filename == "bird-x2.png"
    downloaded = Path(download.path()).read_bytes()
    assert downloaded == api_get(client.base, f"/api/v1/jobs/{job_id}/result").content
    expected = sisr.upscale("default-x2", read_image(photo), tile=TILE, device="cpu")
    np.testing.assert_array_equal(decoded(downloaded), expected)

    # The finished page, as the README shows it.
    card.locator(".compare-slider").focus()
    for _ in range(4):
        page.keyboard.press("PageDown")  # back to 50 %
    page.evaluate("document.activeElement.blur()")
    page.evaluate("window.scrollTo(0, 0)")
    save_screenshot(page, tmp_path / "serve-screenshot.png")

    # A second model on the same image, compared with the first on the slider.
    card.locator(".job-model-select").select_option("default-x3")
    card.locator(".job-rerun").click()
    card.locator(".job-download").nth(1).wait_for(state="visible", timeout=RUN_TIMEOUT_MS)
    second_id = card.get_attribute("data-job-id")
    assert second_id != job_id
    assert card.locator(".compare-left").input_value() == job_id
    assert card.locator(".compare-right").input_value() == second_id
    assert after.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [432, 432]
    assert before.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [288, 288]
    assert card.locator(".compare-label-right").inner_text() == "After: default-x3"

    # Both results in one zip.
    with page.expect_download() as download_info:
        page.locator("#download-all").click()
    with zipfile.ZipFile(download_info.value.path()) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    assert len(contents) == 2
    second = api_get(client.base, f"/api/v1/jobs/{second_id}/result").content
    assert sorted(contents.values()) == sorted([downloaded, second])

    # A phone's width: everything reflows, nothing scrolls sideways.
    page.set_viewport_size({"width": 390, "height": 844})
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => done()))")  # one layout pass
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    client.check_clean()


def save_screenshot(page: Any, target: Path) -> None:
    """Into the test's folder; into docs/ too (for the README) only with SISR_UPDATE_SCREENSHOT=1."""
    page.mouse.move(0, 0)  # no hover highlight on whatever was clicked last
    page.screenshot(path=str(target))
    if os.environ.get("SISR_UPDATE_SCREENSHOT") == "1":
        data = target.read_bytes()
        if len(data) > SCREENSHOT_MAX_BYTES:  # 256 colours: the README's copy stays small
            buffer = io.BytesIO()
            Image.open(target).convert("RGB").quantize(colors=256).save(buffer, format="PNG", optimize=True)
            data = buffer.getvalue()
        SCREENSHOT.write_bytes(data)


def test_errors_are_one_sentence_beside_the_image(make_page: Any, tmp_path: Path) -> None:
    """A text file named .png, and an unknown model: the API's own sentence, in the image's card."""
    import httpx

    client = make_page()
    page = client.open_ready()
    fake = tmp_path / "notes.png"
    fake.write_text("these are notes, not a picture\n")
    card = start_one(page, fake, "default-x2", None)
    error = card.locator(".job-error")
    error.wait_for(state="visible")
    answer = httpx.post(
        client.base + "/api/v1/jobs",
        headers={"Authorization": f"Bearer {TOKEN}"},
        files={"image": ("notes.png", fake.read_bytes(), "image/png")},
        data={"model": "default-x2"},
    )
    assert answer.status_code == 400
    assert error.inner_text() == answer.json()["error"]
    assert "\n" not in error.inner_text() and "notes.png" in error.inner_text()
    assert card.get_attribute("data-state") == "error"
    assert error.get_attribute("role") == "alert"

    # A model the server does not offer (say, one removed since the page loaded): 422, said in the card.
    page.evaluate("document.querySelector('#model-select').add(new Option('gone-x4', 'gone-x4', true, true))")
    page.locator("#file-input").set_input_files(str(fake))
    page.locator("#start-button").click()
    error = page.locator(".job-card").last.locator(".job-error")
    error.wait_for(state="visible")
    assert "gone-x4" in error.inner_text()
    client.check_clean()


def test_cancel_stops_the_run(make_page: Any, photo: Path, server: str, tmp_path: Path) -> None:
    """Cancel on a long run (1024 tiles): the card and the server both say cancelled, and no result exists."""
    large = tmp_path / "large.png"
    Image.open(photo).resize((512, 512), Image.Resampling.NEAREST).save(large)
    client = make_page()
    page = client.open_ready()
    card = start_one(page, large, "default-x2", TILE)
    page.wait_for_function("el => el.dataset.jobId", arg=card.element_handle())
    job_id = card.get_attribute("data-job-id")
    card.locator(".job-cancel").click()
    assert card.get_attribute("data-state") == "cancelled"
    deadline = time.monotonic() + 60
    while (state := api_get(server, f"/api/v1/jobs/{job_id}").json()["state"]) not in ("cancelled", "done", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert state == "cancelled"
    assert api_get(server, f"/api/v1/jobs/{job_id}/result").status_code in (404, 409)
    assert card.locator(".job-compare").is_hidden()
    client.check_clean()


def test_page_needs_the_token_and_follows_the_colour_scheme(make_page: Any) -> None:
    """Without #token= the page says so in a sentence; light and dark follow the system's preference."""
    without = make_page(width=390, height=844)
    page = without.open(token=None)
    message = page.locator("#page-error")
    message.wait_for(state="visible")
    assert "token" in message.inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    without.check_clean()

    client = make_page()
    page = client.open_ready()
    page.emulate_media(color_scheme="light")
    light = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.emulate_media(color_scheme="dark")
    dark = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert light != dark
    # Files dropped on the drop zone become cards (a drop as the browser delivers it: a DataTransfer of Files).
    dropped = page.evaluate_handle(
        """() => {
            const transfer = new DataTransfer();
            transfer.items.add(new File(['not really'], 'dropped-one.png', {type: 'image/png'}));
            transfer.items.add(new File(['not really'], 'dropped-two.jpg', {type: 'image/jpeg'}));
            return transfer;
        }"""
    )
    page.dispatch_event("#drop-zone", "dragenter", {"dataTransfer": dropped})
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": dropped})
    assert page.locator(".job-card .job-name").all_inner_texts() == ["dropped-one.png", "dropped-two.jpg"]
    assert page.locator("#start-button").inner_text() == "Start 2 images"
    # Every control can be reached by its label or name (what a screen reader announces).
    for label in ("Model", "Tile size", "Save as"):
        assert page.get_by_label(label, exact=True).count() == 1
    assert page.get_by_role("button", name="Start").count() == 1
    client.check_clean()
