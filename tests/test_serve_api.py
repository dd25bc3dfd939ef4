"""`sisr serve`'s HTTP API, in process (FastAPI's TestClient): every route, every error status, and results
that are the very pixels `sisr.upscale` gives for the same image and options."""

from __future__ import annotations

import io
import struct
import threading
import time
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

import sisr
from sisr.errors import SisrError
from sisr.image_io import read_image, write_image
from sisr.serve import ServeSettings, check_settings, create_app
from sisr.serve.catalogue import ModelEntry, load_entry

# Starlette's TestClient on httpx warns that it prefers another client; the requests are the same.
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

MODEL = "default-x2"  # the cheapest bundled network: small images through it take a fraction of a second
BASE_URL = "http://127.0.0.1"  # a loopback Host: a server without a token answers no other


def settings(**changes) -> ServeSettings:
    values = {"precision": "fp32", "device": "cpu", "max_upload_bytes": 1 << 20, "sync_max_pixels": 128 * 128}
    values.update(changes)
    return ServeSettings(**values)


@contextmanager
def running(app_settings: ServeSettings, loader=None, wait: bool = True) -> Iterator:
    from fastapi.testclient import TestClient

    with TestClient(create_app(app_settings, loader=loader), base_url=BASE_URL) as client:
        if wait:
            wait_for(lambda: client.get("/api/v1/health").json()["status"] != "loading")
        yield client


def wait_for(condition, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("waited too long")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def client():
    with running(settings()) as client:
        yield client


def picture(height: int, width: int, channels: int = 3, dtype=np.uint8, seed: int = 0) -> np.ndarray:
    """Smooth gradients with noise: an image a network does something visible to."""
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    y, x = np.mgrid[0:height, 0:width]
    planes = [(np.sin(x / (5 + c) + y / (7 + 2 * c)) + 1) / 2 for c in range(channels)]
    image = np.stack(planes, axis=-1) * 0.8 + rng.random((height, width, channels)) * 0.2
    image = np.round(image * top).astype(dtype)
    return image[:, :, 0] if channels == 1 else image


def encode(image: np.ndarray, suffix: str = ".png", **options) -> bytes:
    """The bytes of `image` written by sisr's own writer (16-bit PNG included)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = write_image(Path(folder) / f"image{suffix}", image, **options)
        return path.read_bytes()


def decode(data: bytes, suffix: str = ".png") -> np.ndarray:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"answer{suffix}"
        path.write_bytes(data)
        return read_image(path)


def post_image(client, route: str, data: bytes, name: str = "photo.png", **fields):
    fields.setdefault("model", MODEL)
    return client.post(route, files={"image": (name, data, "image/png")}, data={k: str(v) for k, v in fields.items()})


def wait_done(client, job_id: str) -> dict:
    wait_for(lambda: client.get(f"/api/v1/jobs/{job_id}").json()["state"] not in ("queued", "running"))
    return client.get(f"/api/v1/jobs/{job_id}").json()


def assert_error(response, status: int, *fragments: str) -> str:
    assert response.status_code == status, response.text
    answer = response.json()
    assert answer["status"] == status and isinstance(answer["error"], str)
    assert "\n" not in answer["error"] and "/tmp" not in answer["error"]
    for fragment in fragments:
        assert fragment in answer["error"], answer["error"]
    return answer["error"]


# --- the routes -------------------------------------------------------------------------------------------


def test_health_models_and_limits(client):
    health = client.get("/api/v1/health").json()
    assert health["status"] == "ok" and health["version"] == sisr.__version__
    answer = client.get("/api/v1/models").json()
    models = {model["name"]: model for model in answer["models"]}
    assert {"default-x2", "default-x3", "default-x4", "bicubic"} <= set(models)
    x4 = models["default-x4"]
    assert x4["default"] and x4["scale"] == 4 and x4["scales"] == [4] and x4["source"] == "bundled"
    assert x4["parameters"] == sisr.count_parameters(sisr.load_model("default-x4").network)
    assert [name for name, model in models.items() if model["default"]] == ["default-x4"]
    assert models["bicubic"]["scales"] == [2, 3, 4]
    assert set(x4) == {"name", "scale", "scales", "parameters", "source", "licence", "arch", "denoise", "default"}
    limits = answer["limits"]
    assert limits["max_upload_bytes"] == 1 << 20 and limits["max_jobs"] == 16
    assert {"max_pixels", "result_ttl_s"} <= set(limits)


def test_zoo_entries_in_the_cache_and_files_in_models_dir_are_offered(tmp_path, monkeypatch):
    from sisr.weights.zoo import converted_path, get_pretrained

    monkeypatch.setenv("SISR_CACHE", str(tmp_path / "cache"))
    entry = get_pretrained("edsr-baseline-x2@official")
    converted = converted_path(entry)
    converted.parent.mkdir(parents=True)
    sisr.save_model(sisr.create_model(entry.preset), converted)
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    mine = sisr.create_model("wdsr-b-16-x2")
    sisr.save_model(mine, models_dir / "mine.safetensors")
    (models_dir / "notes.txt").write_text("not a model")
    (models_dir / "broken.pth").write_bytes(b"not a checkpoint")
    with running(settings(models_dir=models_dir)) as client:
        models = {model["name"]: model for model in client.get("/api/v1/models").json()["models"]}
        assert models["edsr-baseline-x2@official"]["source"] == "official"
        assert models["edsr-baseline-x2@official"]["scale"] == 2
        assert models["mine.safetensors"]["source"] == "file" and models["mine.safetensors"]["arch"] == "wdsr"
        assert models["mine.safetensors"]["parameters"] == sisr.count_parameters(mine.network)
        assert "notes.txt" not in models and "broken.pth" not in models
        image = picture(20, 24)
        answer = post_image(client, "/api/v1/upscale", encode(image), model="mine.safetensors")
        assert answer.status_code == 200, answer.text
        expected = sisr.upscale(sisr.load_model(models_dir / "mine.safetensors"), image, precision="fp32")
        np.testing.assert_array_equal(decode(answer.content), expected)


@pytest.mark.parametrize(
    "channels, dtype",
    [(3, np.uint8), (4, np.uint8), (1, np.uint8), (3, np.uint16)],
    ids=["rgb", "rgba", "grey", "rgb16"],
)
def test_the_answer_is_the_image_sisr_upscale_gives(client, channels, dtype):
    image = picture(30, 41, channels, dtype)
    answer = post_image(client, "/api/v1/upscale", encode(image), tile=16)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/png"
    assert answer.headers["x-sisr-model"] == MODEL
    assert answer.headers["x-sisr-input-size"] == "41x30" and answer.headers["x-sisr-output-size"] == "82x60"
    assert float(answer.headers["x-sisr-seconds"]) > 0
    result = decode(answer.content)
    expected = sisr.upscale(MODEL, image, tile=16, precision="fp32")
    assert result.dtype == dtype and result.shape == expected.shape
    np.testing.assert_array_equal(result, expected)


def test_a_raw_body_with_query_options_and_another_format(client):
    image = picture(24, 32)
    answer = client.post(
        "/api/v1/upscale?model=default-x2&format=jpeg&quality=80",
        content=encode(image),
        headers={"Content-Type": "image/png"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/jpeg"
    expected = encode(sisr.upscale(MODEL, image, precision="fp32"), ".jpg", quality=80)
    np.testing.assert_array_equal(decode(answer.content, ".jpg"), decode(expected, ".jpg"))


def test_the_answer_keeps_the_inputs_format_unless_told(client):
    image = picture(20, 20)
    for suffix, media in (
        (".webp", "image/webp"),
        (".tif", "image/tiff"),
        (".jpg", "image/jpeg"),
        (".bmp", "image/png"),
    ):
        answer = client.post(
            "/api/v1/upscale",
            files={"image": (f"a{suffix}", encode(image, suffix), "application/octet-stream")},
            data={"model": MODEL},
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == media


def test_a_job_reports_tile_progress_and_gives_the_result_and_the_input(client):
    image = picture(40, 56, 4)
    submitted = post_image(client, "/api/v1/jobs", encode(image), name="holiday photo.png", tile=16)
    assert submitted.status_code == 202, submitted.text
    job = submitted.json()
    assert job["state"] == "queued" and job["filename"] == "holiday photo.png" and job["input_size"] == [56, 40]
    job = wait_done(client, job["id"])
    assert job["state"] == "done" and job["progress"] == 1.0 and job["error"] is None
    assert job["tiles_total"] == 4 * 3 and job["tiles_done"] == job["tiles_total"]
    assert job["output_size"] == [112, 80] and job["seconds"] > 0
    assert job["result_url"] == f"/api/v1/jobs/{job['id']}/result"
    result = client.get(job["result_url"])
    assert result.status_code == 200
    assert result.headers["content-disposition"].startswith('attachment; filename="holiday photo-x2.png"')
    np.testing.assert_array_equal(decode(result.content), sisr.upscale(MODEL, image, tile=16, precision="fp32"))
    shown = client.get(f"/api/v1/jobs/{job['id']}/input")
    assert shown.status_code == 200 and shown.headers["content-type"] == "image/png"
    np.testing.assert_array_equal(decode(shown.content), image)
    deleted = client.delete(f"/api/v1/jobs/{job['id']}")
    assert deleted.status_code == 200 and deleted.json()["state"] == "done"
    assert_error(client.get(f"/api/v1/jobs/{job['id']}"), 404, "no such job")


def test_the_zip_holds_every_finished_result_under_its_own_name(client):
    ids = []
    for seed in range(3):
        answer = post_image(client, "/api/v1/jobs", encode(picture(16, 16, seed=seed)), name="same.png")
        ids.append(answer.json()["id"])
    for job_id in ids:
        assert wait_done(client, job_id)["state"] == "done"
    answer = client.get(f"/api/v1/results.zip?ids={','.join(ids)}")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
        assert archive.namelist() == ["same-x2.png", "same-x2 (2).png", "same-x2 (3).png"]
        for name, job_id in zip(archive.namelist(), ids):
            assert archive.read(name) == client.get(f"/api/v1/jobs/{job_id}/result").content
    assert_error(client.get(f"/api/v1/results.zip?ids={ids[0]},nosuchjob"), 404, "nosuchjob")
    assert_error(client.get("/api/v1/results.zip?ids="), 422, "ids")


def test_a_client_file_name_is_never_a_path(client):
    server = client.app.state.server
    for hostile, shown in (("../../etc/passwd", "passwd"), ("..\\..\\boot.ini", "boot.ini"), ("..", "image")):
        answer = post_image(client, "/api/v1/jobs", encode(picture(8, 8)), name=hostile)
        job = answer.json()
        assert job["filename"] == shown
        assert wait_done(client, job["id"])["state"] == "done"
        folder = server.store.root / job["id"]
        assert sorted(path.name for path in folder.iterdir()) == ["result.png", "upload"]  # names of the server's
        disposition = client.get(f"/api/v1/jobs/{job['id']}/result").headers["content-disposition"]
        assert f'filename="{shown.rsplit(".", 1)[0]}-x2' in disposition and ".." not in disposition
    everything = [path.name for path in server.store.root.rglob("*")]
    assert "passwd" not in everything and "boot.ini" not in everything


def test_the_page_and_the_schema_are_served_and_nothing_from_a_cdn(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    schema = client.get("/api/v1/openapi.json").json()
    for route in (
        "/api/v1/health",
        "/api/v1/models",
        "/api/v1/upscale",
        "/api/v1/jobs",
        "/api/v1/jobs/{job_id}",
        "/api/v1/jobs/{job_id}/result",
        "/api/v1/jobs/{job_id}/input",
        "/api/v1/results.zip",
    ):
        assert route in schema["paths"]
    assert "delete" in schema["paths"]["/api/v1/jobs/{job_id}"]
    assert client.get("/docs").status_code == 404  # FastAPI's docs pages would load scripts from a CDN


# --- errors ---------------------------------------------------------------------------------------------


def test_an_unreadable_image_is_400_naming_the_clients_file(client):
    for route in ("/api/v1/upscale", "/api/v1/jobs"):
        assert_error(post_image(client, route, b"\x89PNG not really", name="broken.png"), 400, "broken.png", "readable")
    assert_error(
        client.post("/api/v1/upscale", content=b"x", headers={"Content-Type": "text/plain"}), 400, "Content-Type"
    )
    assert_error(client.post("/api/v1/upscale", data={"model": MODEL}, files={"other": ("a", b"a")}), 400, "image")
    assert_error(post_image(client, "/api/v1/upscale", encode(picture(1, 9))), 400, "too small")


def test_an_upload_over_the_byte_limit_is_413_whether_declared_or_streamed(client):
    too_many = bytes((1 << 20) + 100_000)
    assert_error(post_image(client, "/api/v1/upscale", too_many), 413, "1,048,576 bytes")

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(40):
            yield bytes(64 * 1024)

    assert_error(
        client.post("/api/v1/jobs", content=chunks(), headers={"Content-Type": "image/png"}), 413, "1,048,576 bytes"
    )


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int, depth: int) -> bytes:
    """A PNG whose header declares a huge image and whose data holds one row: refused from the header alone."""
    header = struct.pack(">IIBBBBB", width, height, depth, 2, 0, 0, 0)
    row = zlib.compress(bytes(1 + 3 * depth // 8 * min(width, 1000)))
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", row) + png_chunk(b"IEND", b"")


def tiff_claiming(width: int, height: int) -> bytes:
    """A 16-bit grey TIFF declaring width x height, one strip of a few bytes."""
    tags = [
        (256, 4, width),
        (257, 4, height),
        (258, 3, 16),
        (259, 3, 1),
        (262, 3, 1),
        (273, 4, 8),
        (277, 3, 1),
        (278, 4, height),
        (279, 4, 16),
    ]
    ifd = struct.pack("<H", len(tags))
    for tag, kind, value in tags:
        packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, 1) + packed
    return b"II*\0" + struct.pack("<I", 24) + bytes(16) + ifd + struct.pack("<I", 0)


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real small JPEG with the size in its frame header (SOF0) changed."""
    data = bytearray(encode(picture(16, 16), ".jpg"))
    at = data.index(b"\xff\xc0")
    data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.mark.parametrize(
    "kind, data",
    [
        ("png8", png_claiming(100_000, 100_000, 8)),
        ("png16", png_claiming(100_000, 100_000, 16)),
        ("tiff16", tiff_claiming(100_000, 100_000)),
        ("jpeg", jpeg_claiming(60_000, 60_000)),
    ],
)
def test_a_decompression_bomb_is_413_from_its_header(client, kind, data):
    for route in ("/api/v1/upscale", "/api/v1/jobs"):
        message = assert_error(
            post_image(client, route, data, name=f"bomb.{kind}"), 413, f"bomb.{kind}", "--max-pixels"
        )
        assert "000x" in message  # the size it declares


def test_an_image_too_large_for_the_synchronous_route_is_413_naming_the_jobs_route(client):
    image = encode(picture(130, 130))
    assert_error(post_image(client, "/api/v1/upscale", image), 413, "130x130", "/api/v1/jobs")
    job = post_image(client, "/api/v1/jobs", image)
    assert job.status_code == 202
    client.delete(f"/api/v1/jobs/{job.json()['id']}")


@pytest.mark.parametrize(
    "fields, fragment",
    [
        ({"model": "no-such-model"}, "no-such-model"),
        ({"model": "../../../etc/passwd"}, "not on this server"),
        ({"scale": "3"}, "scale=3"),
        ({"tile": "0"}, "tile=0"),
        ({"tile": "100000"}, "tile=100000"),
        ({"tile": "big"}, "tile='big'"),
        ({"format": "gif"}, "format='gif'"),
        ({"format": "jpeg", "quality": "0"}, "quality=0"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_a_bad_option_is_422_naming_it(client, fields, fragment):
    assert_error(post_image(client, "/api/v1/upscale", encode(picture(8, 8)), **fields), 422, fragment)
    assert_error(post_image(client, "/api/v1/jobs", encode(picture(8, 8)), **fields), 422, fragment)


def test_jpeg_for_an_image_with_alpha_is_422(client):
    rgba = encode(picture(8, 8, 4))
    assert_error(post_image(client, "/api/v1/upscale", rgba, format="jpeg"), 422, "alpha")


def test_bicubic_runs_at_the_scale_asked_for(client):
    image = picture(10, 12)
    answer = post_image(client, "/api/v1/upscale", encode(image), model="bicubic", scale=3)
    assert answer.status_code == 200, answer.text
    np.testing.assert_array_equal(decode(answer.content), sisr.upscale(sisr.load_model("bicubic", scale=3), image))


def test_unknown_jobs_and_routes_are_404(client):
    for method, path in (
        ("get", "/api/v1/jobs/0123456789abcdef"),
        ("get", "/api/v1/jobs/0123456789abcdef/result"),
        ("get", "/api/v1/jobs/0123456789abcdef/input"),
        ("delete", "/api/v1/jobs/0123456789abcdef"),
        ("get", "/api/v1/nothing-here"),
    ):
        assert_error(getattr(client, method)(path), 404)


def test_other_hosts_and_other_sites_are_refused_without_a_token(client):
    assert_error(client.get("/api/v1/models", headers={"Host": "attacker.example"}), 403, "localhost")
    cross_site = client.post(
        "/api/v1/jobs", content=b"x", headers={"Origin": "http://attacker.example", "Content-Type": "image/png"}
    )
    assert_error(cross_site, 403, "other sites")
    assert client.get("/api/v1/health", headers={"Host": "localhost:8000"}).status_code == 200


def test_a_token_is_required_on_the_api_but_not_for_the_page(tmp_path):
    with running(settings(host="0.0.0.0", token="s3cret")) as client:
        assert_error(client.get("/api/v1/models"), 401, "missing token")
        answer = client.get("/api/v1/models", headers={"Authorization": "Bearer wrong"})
        assert_error(answer, 401, "wrong token")
        assert answer.headers["www-authenticate"] == "Bearer"
        assert_error(post_image(client, "/api/v1/upscale", encode(picture(8, 8))), 401)
        assert client.get("/api/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.get("/api/v1/health").status_code == 200  # a liveness probe needs no token
        assert client.get("/").status_code == 200  # the page reads the token from its address
        assert client.get("/api/v1/health", headers={"Host": "sisr.example:8000"}).status_code == 200


def test_binding_beyond_loopback_needs_a_token_or_no_auth():
    for host in ("0.0.0.0", "", "192.168.1.5", "example.org", "::"):
        with pytest.raises(SisrError, match="--token"):
            check_settings(ServeSettings(host=host))
    for host in ("127.0.0.1", "localhost", "::1", "127.1.2.3"):
        check_settings(ServeSettings(host=host))
    check_settings(ServeSettings(host="0.0.0.0", token="t"))
    check_settings(ServeSettings(host="0.0.0.0", no_auth=True))
    with pytest.raises(SisrError, match="contradict"):
        check_settings(ServeSettings(token="t", no_auth=True))
    with pytest.raises(SisrError, match="--max-jobs"):
        check_settings(ServeSettings(max_jobs=0))


def test_the_command_refuses_an_open_address_before_starting(capsys):
    from sisr.cli import main

    assert main(["serve", "--host", "0.0.0.0", "--port", "1"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--token" in error and "--no-auth" in error


class Gates:
    """A loader whose loads of the named models wait until opened: a run held mid-way, on purpose."""

    def __init__(self, *names: str) -> None:
        self.gates = {name: threading.Event() for name in names}

    def __call__(self, entry: ModelEntry, scale: int):
        if entry.name in self.gates:
            self.gates[entry.name].wait(60)
        return load_entry(entry, scale)

    def open(self) -> None:
        for gate in self.gates.values():
            gate.set()


def test_while_the_default_model_loads_the_upload_routes_are_503():
    gates = Gates("default-x4")
    try:
        with running(settings(), loader=gates, wait=False) as client:
            assert client.get("/api/v1/health").json()["status"] == "loading"
            answer = client.post(
                "/api/v1/upscale", content=encode(picture(8, 8)), headers={"Content-Type": "image/png"}
            )
            assert_error(answer, 503, "loading")
            assert answer.headers["retry-after"]
            assert_error(post_image(client, "/api/v1/jobs", encode(picture(8, 8))), 503)
            assert client.get("/api/v1/models").status_code == 200
            gates.open()
            wait_for(lambda: client.get("/api/v1/health").json()["status"] == "ok")
            assert post_image(client, "/api/v1/upscale", encode(picture(8, 8))).status_code == 200
    finally:
        gates.open()


def test_a_full_queue_is_429_and_waiting_jobs_can_be_cancelled():
    gates = Gates("default-x3")
    try:
        with running(settings(max_jobs=2), loader=gates) as client:
            image = encode(picture(12, 12))
            held = post_image(client, "/api/v1/jobs", image, model="default-x3").json()  # its model loads until opened
            waiting = post_image(client, "/api/v1/jobs", image).json()
            wait_for(lambda: client.get(f"/api/v1/jobs/{held['id']}").json()["state"] == "running")
            full = post_image(client, "/api/v1/upscale", image)
            assert_error(full, 429, "queue is full")
            assert full.headers["retry-after"]
            assert_error(post_image(client, "/api/v1/jobs", image), 429)
            assert_error(client.get(f"/api/v1/jobs/{waiting['id']}/result"), 409, "queued")
            cancelled = client.delete(f"/api/v1/jobs/{waiting['id']}")
            assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
            assert post_image(client, "/api/v1/jobs", image).status_code == 202  # room again
            gates.open()
            assert wait_done(client, held["id"])["state"] == "done"
            assert client.get(f"/api/v1/jobs/{waiting['id']}").json()["state"] == "cancelled"
    finally:
        gates.open()


def test_a_running_job_cancelled_stops_at_its_next_tile(client):
    image = encode(picture(384, 384))  # 576 tiles of 16: seconds of work, stopped after a few
    job = post_image(client, "/api/v1/jobs", image, tile=16).json()
    wait_for(lambda: client.get(f"/api/v1/jobs/{job['id']}").json()["tiles_done"] >= 1)
    cancelled = client.delete(f"/api/v1/jobs/{job['id']}")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    stored = client.app.state.server.store.get(job["id"])
    assert stored.outcome.result(timeout=60) == "cancelled"  # the worker has let go of it
    state = client.get(f"/api/v1/jobs/{job['id']}").json()
    assert state["state"] == "cancelled" and state["tiles_done"] < state["tiles_total"] == 576
    assert_error(client.get(f"/api/v1/jobs/{job['id']}/result"), 409, "cancelled")
    assert post_image(client, "/api/v1/upscale", encode(picture(8, 8))).status_code == 200  # the worker goes on


def test_results_are_deleted_after_their_time():
    with running(settings(result_ttl_s=0.3)) as client:
        job = post_image(client, "/api/v1/jobs", encode(picture(8, 8))).json()
        assert wait_done(client, job["id"])["state"] == "done"
        folder = client.app.state.server.store.root / job["id"]
        wait_for(lambda: client.get(f"/api/v1/jobs/{job['id']}").status_code == 404, seconds=30)
        assert_error(client.get(f"/api/v1/jobs/{job['id']}/result"), 404)
        assert not folder.exists()
