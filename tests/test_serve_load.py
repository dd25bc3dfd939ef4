"""A small load test of a real `sisr serve` (uvicorn in a subprocess, loopback): concurrent clients, a queue
that fills, and every answer still the image `sisr.upscale` gives. benchmarks/bench_serve.py is the large one
(and the one that times it)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_serve.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_serve", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_serve"] = module  # dataclasses look their module up by name
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("bench_serve", None)


@pytest.mark.slow
def test_concurrent_clients_get_correct_answers_and_only_429s_go_wrong(bench):
    import sisr

    images = bench.sample_images(12, 24, 64, seed=1)
    payloads = [bench.png_bytes(image) for image in images]
    model = sisr.load_model("default-x2")
    expected = [sisr.upscale(model, image) for image in images]  # SISR_CPU_BF16=0 (conftest): fp32 in both processes
    with bench.start_server("--max-jobs", "2", "--device", "cpu") as server:
        outcomes = bench.send_all(server.url, payloads, clients=4, model="default-x2", job_every=3)
        assert server.process.poll() is None  # still serving
        assert httpx.get(server.url + "api/v1/health").json()["status"] == "ok"
    assert bench.check_answers(outcomes, expected) == []
    assert {outcome.route for outcome in outcomes} == {"upscale", "jobs"}
    assert sum(outcome.retries_429 for outcome in outcomes) > 0  # 4 clients, room for 2: the queue filled


def test_the_server_refuses_to_start_on_an_open_address_without_a_token(bench):
    with pytest.raises(RuntimeError, match="--token"), bench.start_server(host="0.0.0.0"):
        pass
