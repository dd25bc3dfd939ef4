"""`sisr upscale IN -o OUT --ray`: a local Ray cluster (a head and two worker nodes on loopback) does a folder.

What a cluster run must give: the very files a single process writes, each
once, in the same tree; and when a worker process is killed outright halfway
through, still every output, whole, with no temporary file left behind.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sisr.cli import main
from sisr.errors import SisrError

IMAGES = 200
# fp32 everywhere: the reference and the workers must not pick different number formats.
MODEL = ["--model", "default-x2", "--precision", "fp32"]


def _write_images(folder: Path) -> None:
    """200 small noisy images of mixed sizes, a third of them in a sub-folder."""
    rng = np.random.default_rng(19)
    for number in range(IMAGES):
        height, width = rng.integers(32, 65, size=2)
        place = folder / "sub" if number % 3 == 0 else folder
        place.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(place / f"image{number:03d}.png")


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden ones too: a temporary file left behind would show), by relative path."""
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes]]:
    """The input folder, and what single-process `sisr upscale` makes of it."""
    root = tmp_path_factory.mktemp("ray")
    _write_images(root / "in")
    assert main(["upscale", str(root / "in"), "-o", str(root / "reference"), "--recursive", *MODEL]) == 0
    reference = _files(root / "reference")
    assert len(reference) == IMAGES
    return root / "in", reference


@pytest.fixture(scope="module")
def cluster():
    """A head without CPUs and two worker nodes of one CPU each: each worker node holds one actor."""
    pytest.importorskip("ray", reason="the Ray pipeline needs Ray: pip install 'sisr[ray]'")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray.cluster_utils import Cluster

    small = 100 * 1024**2
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "object_store_memory": small})
    for _ in range(2):
        cluster.add_node(num_cpus=1, object_store_memory=small)
    ray.init(address=cluster.address, logging_level="WARNING")
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.mark.slow
def test_outputs_equal_single_process(images, cluster, tmp_path: Path) -> None:
    source, reference = images
    out = tmp_path / "out"
    assert main(["upscale", str(source), "-o", str(out), "--recursive", "--ray", "--workers", "2", *MODEL]) == 0
    assert _files(out) == reference


def _actor_processes() -> list[int]:
    """PIDs of the Ray Data actors running ImageWorker (Ray titles them `ray::MapWorker(MapBatches(ImageWorker))`)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"MapBatches(ImageWorker)" in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


@pytest.mark.slow
def test_killed_worker_images_are_retried(images, cluster, tmp_path: Path) -> None:
    from sisr.ray_batch import upscale_folder_on_ray

    source, reference = images
    out = tmp_path / "out"
    killed: list[tuple[int, int]] = []  # (PID, outputs present when it was killed)

    def kill_one_worker_midway() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            written = sum(1 for _ in out.rglob("*.png")) if out.exists() else 0
            pids = _actor_processes()
            if written >= 30 and pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append((pids[0], written))
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_one_worker_midway)
    killer.start()
    tally = upscale_folder_on_ray("default-x2", source, out, workers=2, recursive=True, precision="fp32", device="cpu")
    killer.join()
    assert killed, "no worker was killed"
    assert killed[0][1] < IMAGES, f"the worker was killed after all {IMAGES} outputs were written"
    assert tally.failed == 0, tally.errors
    assert tally.done + tally.skipped == IMAGES
    assert _files(out) == reference  # each output once, whole, equal; no temporary file left


def test_refuses_options_it_cannot_honour(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in").mkdir()
    assert main(["upscale", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--ray", "--stream"]) == 1
    assert "--ray does not take --stream" in capsys.readouterr().err
    assert main(["upscale", str(tmp_path / "in"), "--ray"]) == 1
    assert "--ray takes one input folder and -o OUTPUT_FOLDER" in capsys.readouterr().err


def test_usage_statistics_off_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ray", reason="the Ray pipeline needs Ray: pip install 'sisr[ray]'")
    from sisr.ray_batch import import_ray

    monkeypatch.delenv("RAY_USAGE_STATS_ENABLED", raising=False)
    import_ray()
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0"
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "1")
    import_ray()
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "1"


def test_workers_must_be_positive(tmp_path: Path) -> None:
    from sisr.ray_batch import upscale_folder_on_ray

    with pytest.raises(SisrError, match="--workers 0"):
        upscale_folder_on_ray("bicubic", tmp_path, tmp_path / "out", scale=2, workers=0)
