"""A bounded load test of `sisr serve` on loopback: many clients at once, correct answers, bounded memory, low overhead.

A real server (`sisr serve` in a subprocess, uvicorn on 127.0.0.1) with a
small `--max-jobs`, and --clients threads sending --requests images in all
(random crops of scikit-image's sample photos, --min-side to --max-side
pixels a side, PNG): four in five to the synchronous POST /api/v1/upscale,
one in five as a job (POST /api/v1/jobs, poll, GET the result). A 429 (queue
full) is expected and retried after its Retry-After (a short random wait);
any other failure counts. Checked:

* every answer is the image `sisr.upscale` gives for the same input, pixel
  for pixel (computed here, in the same precision);
* the server's resident memory (VmRSS sampled every 20 ms, and the kernel's
  own peak VmHWM at the end) stays under --rss-bound-mb;
* throughput against the same images in this process, one after another:
  `sisr.upscale` on decoded arrays (the network alone) and `sisr upscale`
  on a folder of the files (decode, network, PNG encode). The server's
  overhead is its wall time over the CLI's, less one (target: under 10 %).

    python benchmarks/bench_serve.py [--clients 20] [--requests 100] [--max-jobs 4] [--model default-x2] [--json out.json]

Import it to reuse `start_server` and `send_all` (tests/test_serve_load.py).
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")
SIMD_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
ADDRESS = re.compile(r"sisr serve: (http://[^/\s]+/)")


def cpu_description() -> tuple[str, list[str]]:
    """The CPU's model name and its SIMD flags that matter to oneDNN (Linux; elsewhere, platform's word)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), []
    fields = {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in text.splitlines())}
    flags = set(fields.get("flags", "").split())
    return fields.get("model name", platform.machine()), [flag for flag in SIMD_FLAGS if flag in flags]


def sample_images(count: int, min_side: int, max_side: int, seed: int = 0) -> list[np.ndarray]:
    """Random crops of the sample photos (scikit-image), else smooth noise: mixed sizes, RGB uint8."""
    generator = np.random.default_rng(seed)
    try:
        import skimage.data

        photos = [np.asarray(getattr(skimage.data, name)())[..., :3] for name in PHOTOS]
    except ImportError:
        photos = [(generator.random((512, 512, 3)) * 255).astype(np.uint8)]
    images = []
    for number in range(count):
        photo = photos[number % len(photos)]
        height, width = (int(generator.integers(min_side, max_side + 1)) for _ in range(2))
        top = int(generator.integers(0, photo.shape[0] - height + 1))
        left = int(generator.integers(0, photo.shape[1] - width + 1))
        images.append(np.ascontiguousarray(photo[top : top + height, left : left + width]))
    return images


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)


# --- the server -----------------------------------------------------------------------------------------


@dataclass
class ServerProcess:
    process: subprocess.Popen
    url: str
    rss_samples_kb: list[int] = field(default_factory=list)

    def status_kb(self, key: str) -> int | None:
        """A VmRSS / VmHWM line of /proc/PID/status in kB (None off Linux or once it has exited)."""
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        except OSError:
            pass
        return None


@contextmanager
def start_server(
    *options: str, host: str = "127.0.0.1", env: dict[str, str] | None = None, timeout: float = 120.0
) -> Iterator[ServerProcess]:
    """`sisr serve --host HOST --port 0 OPTIONS` in a subprocess, ready (health ok), stopped at the end of the block."""
    import httpx

    command = [sys.executable, "-m", "sisr", "-q", "serve", "--host", host, "--port", "0", *options]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})}
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = ADDRESS.search(line)
        if found is None:
            raise RuntimeError(f"sisr serve did not start: {line}{process.stdout.read()}")
        server = ServerProcess(process, found.group(1))
        threading.Thread(target=_drain, args=(process.stdout,), daemon=True).start()
        deadline = time.monotonic() + timeout
        while httpx.get(server.url + "api/v1/health").json()["status"] == "loading":
            if time.monotonic() > deadline:
                raise RuntimeError("sisr serve: the default model did not load in time")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _drain(stream) -> None:
    for _ in stream:  # the server's log: read so that a full pipe never blocks it
        pass


@contextmanager
def sampling_rss(server: ServerProcess, interval: float = 0.02) -> Iterator[None]:
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval):
            value = server.status_kb("VmRSS")
            if value is not None:
                server.rss_samples_kb.append(value)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


# --- the clients ----------------------------------------------------------------------------------------


@dataclass
class Outcome:
    index: int
    route: str
    status: int
    body: bytes
    retries_429: int
    seconds: float


def send_one(client, url: str, index: int, data: bytes, model: str, as_job: bool) -> Outcome:
    """One image to the server, retried after each 429 (as a client should); the final answer."""
    start = time.perf_counter()
    retries = 0
    route = "jobs" if as_job else "upscale"
    while True:
        files = {"image": (f"image-{index:04d}.png", data, "image/png")}
        answer = client.post(f"{url}api/v1/{route}", files=files, data={"model": model})
        if answer.status_code != 429:
            break
        retries += 1
        time.sleep(float(answer.headers.get("retry-after", "1")) * random.uniform(0.5, 1.5))
    if as_job and answer.status_code == 202:
        job = answer.json()
        while job["state"] in ("queued", "running"):
            time.sleep(0.25)  # as a page polls: a few times a second
            job = client.get(f"{url}api/v1/jobs/{job['id']}").json()
        answer = client.get(f"{url}api/v1/jobs/{job['id']}/result")
    return Outcome(index, route, answer.status_code, answer.content, retries, time.perf_counter() - start)


def send_all(url: str, payloads: list[bytes], clients: int, model: str, job_every: int = 5) -> list[Outcome]:
    """`clients` threads, each with its own connection, taking the next image until all are sent."""
    import httpx

    outcomes: list[Outcome] = []
    lock = threading.Lock()
    next_index = iter(range(len(payloads)))

    def work() -> None:
        with httpx.Client(timeout=600) as client:
            while True:
                with lock:
                    index = next(next_index, None)
                if index is None:
                    return
                try:
                    outcome = send_one(client, url, index, payloads[index], model, index % job_every == job_every - 1)
                except httpx.HTTPError as error:
                    outcome = Outcome(index, "?", 0, repr(error).encode(), 0, 0.0)
                with lock:
                    outcomes.append(outcome)

    threads = [threading.Thread(target=work) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(outcomes, key=lambda outcome: outcome.index)


def check_answers(outcomes: list[Outcome], expected: list[np.ndarray]) -> list[str]:
    """What went wrong: any status but 200 (after the 429s' retries), any pixel unlike `sisr.upscale`'s."""
    problems = []
    for outcome in outcomes:
        if outcome.status != 200:
            problems.append(f"image {outcome.index} ({outcome.route}): HTTP {outcome.status} {outcome.body[:200]!r}")
        elif not np.array_equal(decode_png(outcome.body), expected[outcome.index]):
            problems.append(f"image {outcome.index} ({outcome.route}): pixels differ from sisr.upscale")
    if len(outcomes) != len(expected):
        problems.append(f"{len(outcomes)} answers for {len(expected)} images")
    return problems


# --- the baselines --------------------------------------------------------------------------------------


@dataclass
class Spent:
    """Wall and CPU seconds of one way of upscaling, summed over the rounds."""

    wall: float = 0.0
    cpu: float = 0.0

    def add(self, wall: float, cpu: float) -> None:
        self.wall += wall
        self.cpu += cpu


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its threads, from /proc/PID/stat (0 where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime: fields 14 and 15


def network_only(model, images: list[np.ndarray]) -> tuple[float, float, list[np.ndarray]]:
    """`sisr.upscale` on each decoded image in turn: (wall seconds, CPU seconds of this process, results)."""
    from sisr import upscale

    cpu, start = time.process_time(), time.perf_counter()
    results = [upscale(model, image) for image in images]
    return time.perf_counter() - start, time.process_time() - cpu, results


def command_line(folder: Path, output: Path, model: str, precision: str) -> tuple[float, float]:
    """`sisr upscale FOLDER -o OUTPUT` in this process (decode, network, PNG encode): wall and CPU seconds."""
    import shutil

    from sisr.cli import main

    shutil.rmtree(output, ignore_errors=True)
    cpu, start = time.process_time(), time.perf_counter()
    if main(["-q", "upscale", str(folder), "-o", str(output), "--model", model, "--precision", precision]) != 0:
        raise SystemExit("sisr upscale failed")
    return time.perf_counter() - start, time.process_time() - cpu


def served(server: ServerProcess, payloads: list[bytes], clients: int, model: str) -> tuple[float, float, list]:
    """The images through the server by `clients` threads: wall seconds, the server's CPU seconds, the outcomes."""
    cpu, start = process_cpu_seconds(server.process.pid), time.perf_counter()
    outcomes = send_all(server.url, payloads, clients, model)
    return time.perf_counter() - start, process_cpu_seconds(server.process.pid) - cpu, outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5, help="the images are split into rounds, the ways alternate")
    parser.add_argument("--min-side", type=int, default=64)
    parser.add_argument("--max-side", type=int, default=256)
    parser.add_argument(
        "--max-jobs", type=int, default=4, help="the server's --max-jobs: fewer than --clients, so 429s"
    )
    parser.add_argument("--model", default="default-x2")
    parser.add_argument("--precision", default="auto")
    parser.add_argument(
        "--rss-bound-mb", type=float, default=1024, help="the bound the server's peak RSS must stay under"
    )
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()

    import torch

    import sisr

    cpu_name, flags = cpu_description()
    images = sample_images(args.requests, args.min_side, args.max_side)
    payloads = [png_bytes(image) for image in images]
    model = sisr.load_model(args.model).prepare(args.precision, "cpu")
    network_only(model, images[:10])  # warm-up: oneDNN's first runs
    spent = {"server": Spent(), "network only": Spent(), "sisr upscale (CLI)": Spent()}
    expected: list[np.ndarray] = [np.empty(0)] * len(images)
    outcomes = []
    server_options = ["--max-jobs", str(args.max_jobs), "--precision", args.precision, "--device", "cpu"]
    with tempfile.TemporaryDirectory(prefix="sisr-bench-serve-") as temporary, start_server(*server_options) as server:
        send_all(server.url, payloads[:10], min(args.clients, args.max_jobs), args.model)  # warm-up, as above
        idle_kb = server.status_kb("VmRSS") or 0
        with sampling_rss(server):
            # A shared machine's load drifts over minutes: each way gets every round's images in turn, in a
            # rotating order, so that drift falls on all three alike.
            for number in range(args.rounds):
                part = list(range(number, len(images), args.rounds))
                folder = Path(temporary) / f"in-{number}"
                folder.mkdir()
                for index in part:
                    (folder / f"image-{index:04d}.png").write_bytes(payloads[index])
                ways = ["network only", "server", "sisr upscale (CLI)"]
                for way in ways[number % 3 :] + ways[: number % 3]:
                    if way == "network only":
                        wall, cpu, results = network_only(model, [images[index] for index in part])
                        for index, result in zip(part, results):
                            expected[index] = result
                    elif way == "server":
                        wall, cpu, answers = served(
                            server, [payloads[index] for index in part], args.clients, args.model
                        )
                        for answer in answers:
                            answer.index = part[answer.index]
                        outcomes += answers
                    else:
                        wall, cpu = command_line(folder, Path(temporary) / f"out-{number}", args.model, args.precision)
                    spent[way].add(wall, cpu)
        peak_kb = server.status_kb("VmHWM") or max(server.rss_samples_kb, default=0)

    outcomes.sort(key=lambda outcome: outcome.index)
    problems = check_answers(outcomes, expected)
    retried = sum(outcome.retries_429 for outcome in outcomes)
    peak_mb = peak_kb / 1024
    network, cli, server_spent = spent["network only"], spent["sisr upscale (CLI)"], spent["server"]
    record = {
        "date": datetime.date.today().isoformat(),
        "cpu": cpu_name,
        "flags": flags,
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "sisr": sisr.__version__,
        "model": f"{args.model}, {model.precision}, cpu",
        "clients": args.clients,
        "requests": args.requests,
        "rounds": args.rounds,
        "sides": [args.min_side, args.max_side],
        "max_jobs": args.max_jobs,
        "answers_429_retried": retried,
        "failures": problems,
        "wall_seconds": {way: value.wall for way, value in spent.items()},
        "cpu_seconds": {way: value.cpu for way, value in spent.items()},
        "images_per_second": {way: args.requests / value.wall for way, value in spent.items()},
        "server_overhead_over_cli": {"wall": server_spent.wall / cli.wall - 1, "cpu": server_spent.cpu / cli.cpu - 1},
        "server_overhead_over_network": {
            "wall": server_spent.wall / network.wall - 1,
            "cpu": server_spent.cpu / network.cpu - 1,
        },
        "rss_mb": {
            "idle": idle_kb / 1024,
            "peak (VmHWM)": peak_mb,
            "peak sampled": max(server.rss_samples_kb, default=0) / 1024,
            "bound": args.rss_bound_mb,
        },
    }
    print(
        f"{record['date']}, {cpu_name} ({' '.join(flags) or 'flags unknown'}), {record['threads']} threads, "
        f"torch {torch.__version__}, load average at the end {record['load_average']}"
    )
    print(
        f"{args.requests} requests from {args.clients} clients in {args.rounds} rounds, {args.min_side}-"
        f"{args.max_side} px PNG, {record['model']}, --max-jobs {args.max_jobs}: {retried} answers 429 (retried)"
    )
    for way, value in spent.items():
        print(f"{way:>20}: {args.requests / value.wall:6.2f} images/s ({value.wall:.2f} s wall, {value.cpu:.2f} s CPU)")
    for baseline in ("cli", "network"):
        overhead = record[f"server_overhead_over_{baseline}"]
        print(f"server over {baseline}: {overhead['wall']:+.1%} wall, {overhead['cpu']:+.1%} CPU (target under +10 %)")
    print(f"server RSS: idle {idle_kb / 1024:.0f} MB, peak {peak_mb:.0f} MB (bound {args.rss_bound_mb:.0f} MB)")
    print(f"failures other than 429: {len(problems)}" + "".join(f"\n  {problem}" for problem in problems[:10]))
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    return 1 if problems or peak_mb > args.rss_bound_mb else 0


if __name__ == "__main__":
    sys.exit(main())
