"""Stopping and resuming gives the same weights, bit for bit, as never stopping (CPU).

Every run here is a separate `sisr train` process, as a user would start it:
a resumed run shares nothing with the first one but the output folder. Ctrl-C
exits 130 and SIGTERM 143, both after saving a checkpoint; one run at a time
may use an output folder.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from sisr import SisrError
from sisr.image_io import write_image
from sisr.train import load_config, train

RUN_CLI = "import sys; from sisr.cli import main; sys.exit(main(sys.argv[1:]))"


def _write_config(tmp_path: Path) -> Path:
    """WDSR (weight norm) with EMA, a mid-run learning-rate milestone, a worker process and the
    disk cache: every piece of state a resume has to restore."""
    rng = np.random.default_rng(0)
    for index in range(3):
        hr = np.repeat(np.repeat(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8), 4, 0), 4, 1)
        write_image(tmp_path / "hr" / f"{index}.png", hr)
        write_image(tmp_path / "lr" / f"{index}x2.png", hr[::2, ::2])
    config = load_config(
        values={
            "model": {"preset": "wdsr-b-16-x2", "args": {"num_blocks": 1}},
            "data": {
                "train": str(tmp_path / "hr"),
                "train_lr": str(tmp_path / "lr"),
                "patch_size": 16,
                "batch_size": 3,
                "workers": 1,
                "cache": "disk",
                "cache_dir": str(tmp_path / "cache"),
            },
            "val": {"set": ""},
            "optim": {"milestones": [6]},
            "train": {"ema": 0.9, "threads": 1, "log_every": 1},
        }
    )
    path = tmp_path / "tiny.toml"
    path.write_text(config.to_toml())
    return path


def _start(
    config: Path, out: Path, steps: int, new_session: bool = False, extra: Sequence[str] = ()
) -> subprocess.Popen:
    command = [
        sys.executable,
        "-c",
        RUN_CLI,
        "train",
        str(config),
        "--out",
        str(out),
        "--steps",
        str(steps),
        "--no-progress",
        *extra,
    ]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=new_session
    )


def _finish(process: subprocess.Popen, expected_rc: int = 0) -> str:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == expected_rc, output
    return output


def _assert_same_state(first: Path, second: Path) -> None:
    a, b = (torch.load(path / "checkpoint.pt", weights_only=True) for path in (first, second))
    assert a["step"] == b["step"] and a["samples_seen"] == b["samples_seen"]
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key} differs"
    for index, state in a["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(value, b["optimizer"]["state"][index][key]), f"optimizer {index}.{key} differs"
    assert a["scheduler"] == b["scheduler"]
    assert a["optimizer"]["param_groups"][0]["lr"] == b["optimizer"]["param_groups"][0]["lr"]


def _train_here(config: Path, out: Path, steps: int) -> None:
    """A run in this process: the reference the separate processes are compared with."""
    train(load_config(config, values={"train": {"out": str(out), "steps": steps}}), progress_bar=False)


@pytest.mark.slow
def test_half_then_resume_in_another_process_equals_uninterrupted(tmp_path):
    config = _write_config(tmp_path)
    whole, halves = tmp_path / "whole", tmp_path / "halves"
    _train_here(config, halves, 4)
    assert torch.load(halves / "checkpoint.pt", weights_only=True)["step"] == 4
    second_half = _start(config, halves, 8)  # the same command with more steps continues
    _train_here(config, whole, 8)
    output = _finish(second_half)
    assert "resuming from step 4" in output
    _assert_same_state(whole, halves)
    assert torch.load(whole / "checkpoint.pt", weights_only=True)["scheduler"]["last_epoch"] == 8
    records = [json.loads(line) for line in (halves / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["event"] == "train"] == list(range(1, 9))


@pytest.mark.slow
def test_a_run_with_a_degradation_recipe_resumes_in_another_process_bit_for_bit(tmp_path):
    """The recipe's draws are a function of (seed, sample number) alone, so a resumed run, in a new process
    with a new loader worker, degrades every later patch as the uninterrupted run did."""
    plain_config = _write_config(tmp_path)
    values = load_config(plain_config).to_dict()
    values["data"]["degradation"] = "realesrgan"
    values["data"]["degradation_args"] = {"jpeg_range": [40, 90], "noise_range2": [1, 10]}
    config = tmp_path / "degraded.toml"
    config.write_text(load_config(values=values).to_toml())
    whole, halves = tmp_path / "whole", tmp_path / "halves"
    _train_here(config, halves, 3)
    second_half = _start(config, halves, 6)
    _train_here(config, whole, 6)
    assert "resuming from step 3" in _finish(second_half)
    _assert_same_state(whole, halves)
    # The recipe is in effect: the same run on the bicubic LR learns something else.
    _train_here(plain_config, tmp_path / "bicubic", 6)
    degraded, plain = (
        torch.load(path / "checkpoint.pt", weights_only=True)["model"] for path in (whole, tmp_path / "bicubic")
    )
    assert any(not torch.equal(degraded[key], plain[key]) for key in degraded)


def _wait_for_step(process: subprocess.Popen, log: Path, step: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if log.is_file() and any(
            json.loads(line).get("step", 0) >= step for line in log.read_text().splitlines() if line.strip()
        ):
            return
        assert process.poll() is None, process.communicate()[0]
        time.sleep(0.05)
    raise AssertionError(f"no step {step} in {log} within 120 s")


@pytest.mark.slow
def test_sigterm_to_the_process_group_reaches_the_workers_too_and_still_saves(tmp_path):
    """`timeout`, `kill -- -PGID` and batch schedulers signal every process of the group: the DataLoader
    worker must leave the stopping to the training process instead of dying and failing the run."""
    config = _write_config(tmp_path)
    killed = tmp_path / "killed"
    process = _start(config, killed, 100000, new_session=True)
    _wait_for_step(process, killed / "log.jsonl", 3)
    os.killpg(process.pid, signal.SIGTERM)
    output = _finish(process, expected_rc=143)
    assert "SIGTERM received" in output and "run the same command again to continue" in output
    assert "DataLoader worker" not in output
    assert torch.load(killed / "checkpoint.pt", weights_only=True)["step"] >= 3


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_the_resumed_run_matches(tmp_path):
    config = _write_config(tmp_path)
    killed = tmp_path / "killed"
    process = _start(config, killed, 100000)
    _wait_for_step(process, killed / "log.jsonl", 3)
    process.send_signal(signal.SIGTERM)
    output = _finish(process, expected_rc=143)  # 128 + SIGTERM, the shell's convention
    assert "SIGTERM received" in output and "run the same command again to continue" in output
    stopped_at = torch.load(killed / "checkpoint.pt", weights_only=True)["step"]
    assert 3 <= stopped_at < 100000

    total = stopped_at + 3
    resumed = _start(config, killed, total)
    _train_here(config, tmp_path / "whole", total)
    _finish(resumed)
    _assert_same_state(tmp_path / "whole", killed)


def test_a_resumed_run_does_not_need_its_init_weights_any_more(tmp_path):
    """The checkpoint holds the weights: a run continued on another machine, or after the init file was
    moved, resumes instead of stopping at the missing `model.init`."""
    from sisr import create_model
    from sisr.weights import save_model

    init = tmp_path / "start.safetensors"
    save_model(create_model("wdsr-b-16-x2", num_blocks=1), init)
    values = load_config(_write_config(tmp_path)).to_dict()
    values["model"]["init"] = str(init)
    config = tmp_path / "from-init.toml"
    config.write_text(load_config(values=values).to_toml())
    out = tmp_path / "run"
    _train_here(config, out, 2)
    init.unlink()
    with pytest.raises(SisrError, match="weight file not found"):  # a new run still needs it
        _train_here(config, tmp_path / "other", 2)
    _train_here(config, out, 4)
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 4


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_exits_130(tmp_path):
    config = _write_config(tmp_path)
    out = tmp_path / "run"
    process = _start(config, out, 100000)
    _wait_for_step(process, out / "log.jsonl", 2)
    process.send_signal(signal.SIGINT)
    output = _finish(process, expected_rc=130)
    assert "SIGINT received" in output and "run the same command again to continue" in output
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] >= 2


# --- one run per output folder -------------------------------------------------------------------

HOLD_AS_FINETUNE = textwrap.dedent(
    """
    import sys
    from sisr.train.config import load_finetune_config
    from sisr.train.run import claim_out_dir
    config = load_finetune_config(values={"model": {"init": "g.safetensors"}, "train": {"out": sys.argv[1]}})
    with claim_out_dir(config):
        print("holding", flush=True)
        sys.stdin.readline()
    """
)


def _in_use_by(out: Path, command: str, pid: int) -> re.Pattern:
    return re.compile(rf"error: {re.escape(str(out))} is in use by {command} \(pid {pid}\) since [\d-]+ [\d:]+; ")


@pytest.mark.slow
def test_a_second_run_into_a_folder_in_use_is_refused_naming_the_first(tmp_path):
    config = _write_config(tmp_path)
    out = tmp_path / "run"
    first = _start(config, out, 100000)
    try:
        _wait_for_step(first, out / "log.jsonl", 1)
        second = _finish(_start(config, out, 100000, extra=["--seed", "7"]), expected_rc=1)
        assert _in_use_by(out, "sisr train", first.pid).search(second), second
        finetune = subprocess.run(
            [sys.executable, "-c", RUN_CLI, "finetune", "--init", "g.safetensors", "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert finetune.returncode == 1 and _in_use_by(out, "sisr train", first.pid).search(finetune.stderr)
    finally:
        first.send_signal(signal.SIGTERM)
    _finish(first, expected_rc=143)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["event"] for r in records].count("start") == 1  # the refused runs wrote nothing
    assert torch.load(out / "checkpoint.pt", weights_only=True)["config"]["train"]["seed"] != 7


@pytest.mark.slow
def test_a_folder_held_by_a_finetuning_run_is_refused_naming_it(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_AS_FINETUNE, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        refused = _finish(_start(_write_config(tmp_path), out, 10), expected_rc=1)
        assert _in_use_by(out, "sisr finetune", holder.pid).search(refused), refused
    finally:
        holder.communicate("\n", timeout=60)
    assert holder.returncode == 0


@pytest.mark.slow
def test_a_run_killed_outright_leaves_its_folder_to_the_next_run_which_clears_its_temporary_files(tmp_path):
    config = _write_config(tmp_path)
    out = tmp_path / "run"
    every_step = ["--set", "train.checkpoint_every=1"]
    killed = _start(config, out, 100000, extra=every_step)
    _wait_for_step(killed, out / "log.jsonl", 2)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    half_written = out / f".checkpoint.pt.{killed.pid}.abcdefgh.tmp"  # as a kill during a save leaves it
    half_written.write_bytes(b"half a checkpoint")
    step = torch.load(out / "checkpoint.pt", weights_only=True)["step"]

    output = _finish(_start(config, out, step + 2, extra=every_step))
    assert f"taking over the lock of sisr train (pid {killed.pid})" in output
    # With the planted file, any that the kill itself left mid-write (a checkpoint is saved every step).
    assert re.search(rf"removed what killed processes left: .*{re.escape(half_written.name)}", output), output
    assert f"resuming from step {step}" in output
    assert not half_written.exists()
    assert [path.name for path in out.iterdir() if path.name.endswith(".tmp")] == []
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == step + 2
