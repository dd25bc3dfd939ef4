"""`sisr upscale` as a process among others: stopped by signals, killed outright, run again.

Each test starts the real command in a subprocess and sends it a real
signal while it is writing a streamed TIFF (the one output written while the
network still runs). Training's signals and its folder lock are tested in
test_train_resume.py, which has the tiny training runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sisr.files import temporary_file_writer
from sisr.image_io import write_image

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and PIDs in temporary names"),
]

RUN_CLI = "import sys; from sisr.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    """Large enough that default-x4 with small tiles takes a while on the CPU."""
    path = tmp_path_factory.mktemp("inputs") / "photo.png"
    write_image(path, np.random.default_rng(0).integers(0, 256, (320, 320, 3), dtype=np.uint8))
    return path


def upscale(*args: str) -> subprocess.Popen:
    # The C kernels are compiled on first use; not in the middle of this test.
    env = {**os.environ, "SISR_NATIVE_KERNELS": "0"}
    return subprocess.Popen(
        [sys.executable, "-c", RUN_CLI, "upscale", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def streaming_into(out: Path, photo: Path) -> subprocess.Popen:
    """`sisr upscale` writing `out/photo-x4.tif` band by band, returned once its temporary file exists."""
    process = upscale(str(photo), "-o", f"{out}/", "--format", "tif", "--stream", "--tile", "16", "--device", "cpu")
    deadline = time.monotonic() + 120
    while not (out.is_dir() and any(temporary_file_writer(path.name) == process.pid for path in out.iterdir())):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"no temporary file in {out}: {process.communicate()}")
        time.sleep(0.02)
    return process


@pytest.mark.parametrize(
    ("signum", "status", "said"), [(signal.SIGTERM, 143, "stopped by SIGTERM"), (signal.SIGINT, 130, "interrupted")]
)
def test_a_signal_stops_upscaling_cleanly_with_its_exit_status(tmp_path, photo, signum, status, said):
    out = tmp_path / "out"
    process = streaming_into(out, photo)
    try:
        process.send_signal(signum)
        _, errors = process.communicate(timeout=120)
    finally:
        process.kill()  # a no-op once it has ended
    assert process.returncode == status, errors
    assert errors.rstrip().endswith(f"sisr upscale: {said}")
    assert "Traceback" not in errors
    assert list(out.iterdir()) == []  # neither a torn output nor its temporary file


def test_the_next_run_removes_what_a_killed_run_left_in_its_output_folder(tmp_path, photo):
    out = tmp_path / "out"
    killed = streaming_into(out, photo)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=60)
    (left,) = [path.name for path in out.iterdir()]
    assert temporary_file_writer(left) == killed.pid

    small = tmp_path / "small.png"
    write_image(small, np.zeros((8, 8, 3), dtype=np.uint8))
    again = upscale(str(small), "-o", f"{out}/", "--model", "bicubic", "--scale", "4")
    _, errors = again.communicate(timeout=120)
    assert again.returncode == 0, errors
    assert f"removed what killed processes left: {left}" in errors
    assert [path.name for path in out.iterdir()] == ["small-x4.png"]
