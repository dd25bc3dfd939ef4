"""Data-parallel training: 2 processes (Gloo, CPU) equal one process on the same global batch."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from sisr.image_io import write_image
from sisr.train import load_config, train


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _data(tmp_path: Path) -> dict:
    rng = np.random.default_rng(0)
    for index in range(5 if not (tmp_path / "hr").exists() else 0):
        hr = np.repeat(np.repeat(rng.integers(0, 256, (8, 10, 3), dtype=np.uint8), 4, 0), 4, 1)
        write_image(tmp_path / "hr" / f"{index}.png", hr)
        write_image(tmp_path / "lr" / f"{index}.png", hr[::2, ::2])
    return {
        "train": str(tmp_path / "hr"),
        "train_lr": str(tmp_path / "lr"),
        "patch_size": 16,
        "cache": "memory",
        "workers": 0,
    }


def _config(tmp_path: Path, out: str, batch_size: int) -> dict:
    return {
        "model": {"preset": "edsr-baseline-x2", "args": {"num_blocks": 1, "num_filters": 8}},
        "data": {**_data(tmp_path), "batch_size": batch_size},
        "val": {"set": ""},
        "optim": {"lr": 1e-4},
        "train": {"steps": 3, "out": str(tmp_path / out), "device": "cpu", "threads": 1, "log_every": 1},
    }


def _rank_main(rank: int, world_size: int, port: int, config: dict, results: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank)
    )
    result = train(config, progress_bar=False)
    torch.save(result.model.state_dict(), Path(results) / f"rank{rank}.pt")


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process_with_the_global_batch(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    mp.spawn(_rank_main, args=(2, _free_port(), _config(tmp_path, "ddp", 2), str(results)), nprocs=2, join=True)
    rank0, rank1 = (torch.load(results / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    single = train(_config(tmp_path, "single", 4), progress_bar=False).model.state_dict()
    initial = _initial_weights()
    for key, value in single.items():
        assert torch.equal(rank0[key], rank1[key]), f"{key} differs between ranks"
        torch.testing.assert_close(rank0[key], value, rtol=1e-5, atol=1e-6)
        assert not torch.equal(value, initial[key]), f"{key} did not train"
    # Only rank 0 writes: one log with one start record, and the batch it reports is global.
    records = (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()
    assert sum('"event": "start"' in line for line in records) == 1
    assert '"world_size": 2' in records[0] and '"global_batch": 4' in records[0]


def _initial_weights() -> dict:
    """The weights every run starts from: the network built right after seeding with train.seed."""
    from sisr.models import build_model, preset_spec

    with torch.random.fork_rng():
        torch.manual_seed(0)
        return build_model(preset_spec("edsr-baseline-x2", num_blocks=1, num_filters=8)).state_dict()


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("torchrun") is None or shutil.which("sisr") is None,
    reason="torchrun or the sisr command is not on PATH",
)
def test_torchrun_launches_the_command(tmp_path):
    config_path = tmp_path / "ddp.toml"
    config_path.write_text(load_config(values=_config(tmp_path, "torchrun", 2)).to_toml())
    command = [
        "torchrun",
        "--nnodes",
        "1",
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(_free_port()),
        "--no-python",
        "sisr",
        "train",
        str(config_path),
        "--no-progress",
    ]
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "batch 2 x 2 process(es) = 4" in completed.stderr
    single = train(_config(tmp_path, "single", 4), progress_bar=False).model.state_dict()
    checkpoint = torch.load(tmp_path / "torchrun" / "checkpoint.pt", weights_only=True)
    assert checkpoint["world_size"] == 2 and checkpoint["samples_seen"] == 12
    for key, value in single.items():
        torch.testing.assert_close(checkpoint["model"][key], value, rtol=1e-5, atol=1e-6)


def test_batch_norm_is_synchronised_across_gpu_processes_and_left_per_process_on_cpu(caplog):
    """SRResNet's batch norm under DDP: SyncBatchNorm on GPUs (same weights, same keys); a warning on CPU."""
    import logging

    from torch import nn

    from sisr.models import build_model, preset_spec
    from sisr.train.distributed import sync_batch_norm

    torch.manual_seed(0)
    model = build_model(preset_spec("srresnet-x4", num_blocks=2))
    before = {key: value.clone() for key, value in model.state_dict().items()}
    plain = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert plain > 0

    with caplog.at_level(logging.WARNING, logger="sisr"):
        assert sync_batch_norm(model, torch.device("cpu")) is model
    assert f"{plain} batch norm layer(s)" in caplog.text and "per process" in caplog.text
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in model.modules())

    # The conversion itself needs no GPU: check what a CUDA run would train.
    assert sync_batch_norm(model, torch.device("cuda", 0)) is model
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in model.modules()) == plain
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[key], before[key]) for key in before)
    model.eval()  # outside training SyncBatchNorm is plain batch norm, so it runs on the CPU too
    with torch.no_grad():
        assert model(torch.rand(1, 3, 8, 8)).shape == (1, 3, 32, 32)

    wdsr = build_model(preset_spec("wdsr-b-16-x2"))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sisr"):
        assert sync_batch_norm(wdsr, torch.device("cpu")) is wdsr
    assert caplog.text == ""  # no batch norm, nothing to say
