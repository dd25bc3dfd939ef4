"""sisr.inference.pipeline: every job once, in order, failures by job, bounded look-ahead; the batch benchmark runs."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sisr.inference.pipeline import overlapped


def test_every_job_comes_out_once_in_order_with_its_value():
    outcomes = list(overlapped(range(20), lambda n: n * 10, lambda n, read: read + 1, lambda n, computed: -computed))
    assert [o.job for o in outcomes] == list(range(20))
    assert [o.value for o in outcomes] == [-(n * 10 + 1) for n in range(20)]
    assert all(o.error is None and o.seconds >= 0 for o in outcomes)


def test_a_failing_stage_fails_its_job_only_and_skips_its_later_stages():
    written = []

    def read(n):
        if n == 2:
            raise OSError("unreadable")
        return n

    def compute(n, value):
        if n == 5:
            raise ValueError("bad network day")
        return value

    def write(n, value):
        if n == 7:
            raise PermissionError("read-only")
        written.append(n)
        return n

    outcomes = list(overlapped(range(10), read, compute, write))
    errors = {o.job: type(o.error).__name__ for o in outcomes if o.error is not None}
    assert errors == {2: "OSError", 5: "ValueError", 7: "PermissionError"}
    assert written == [0, 1, 3, 4, 6, 8, 9]


def test_the_network_runs_on_the_calling_thread_and_the_codecs_beside_it():
    where = {}
    caller = threading.get_ident()

    def note(stage):
        where.setdefault(stage, set()).add(threading.get_ident())

    list(
        overlapped(
            range(5),
            lambda n: note("read"),
            lambda n, _: note("compute"),
            lambda n, _: note("write"),
        )
    )
    assert where["compute"] == {caller}
    assert caller not in where["read"] | where["write"]


def test_reading_runs_at_most_prefetch_images_ahead_of_the_network():
    read_so_far = []
    ahead = []

    def compute(n, _):
        ahead.append(len(read_so_far) - n - 1)

    list(overlapped(range(30), read_so_far.append, compute, lambda n, _: None, prefetch=2))
    # In hand for the network: this one, `prefetch` queued, one more held by the reader waiting for room.
    assert max(ahead) <= 3


def test_leaving_the_loop_early_stops_the_threads_and_writes_no_more():
    written = []
    outcomes = overlapped(range(100), lambda n: n, lambda n, v: v, lambda n, v: written.append(n))
    for outcome in outcomes:
        if outcome.job == 3:
            break
    outcomes.close()
    assert len(written) <= 3 + 2 + 1  # done so far, queued for the writer, in the writer's hands
    assert not [t for t in threading.enumerate() if t.name in ("sisr-read", "sisr-write")]


@pytest.mark.filterwarnings("ignore")
def test_the_batch_benchmark_reports_the_three_ways(tmp_path):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_batch.py"
    out = tmp_path / "batch.json"
    done = subprocess.run(
        [sys.executable, str(script), "--images", "4", "--min-side", "8", "--max-side", "12", "--model", "default-x2"]
        + ["--chunks", "2", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(out.read_text())
    assert set(record["images_per_second"]) == {"network only", "overlapped", "sequential"}
    assert all(rate > 0 for rate in record["images_per_second"].values())
    assert record["cpu"] and record["date"] and "overlapped / network only" in done.stdout


def test_a_large_image_off_a_terminal_logs_its_tiles_every_few_seconds(caplog, monkeypatch):
    import importlib
    import logging

    upscale_module = importlib.import_module("sisr.inference.upscale")  # the package's `upscale` is the function

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    progress = upscale_module.progress_bar(12, True, "big.png")
    assert isinstance(progress, upscale_module.TileProgressLines)
    progress.lines.interval = 0
    with caplog.at_level(logging.INFO, logger="sisr"):
        progress.update(3)
        progress.update(9)
        progress.close()
    assert [m.split(",")[0] for m in caplog.messages] == ["big.png: 3/12 tiles", "big.png: 12/12 tiles"]
    assert caplog.messages[-1].endswith("0s left")
    assert upscale_module.progress_bar(1, True, "small.png") is None
