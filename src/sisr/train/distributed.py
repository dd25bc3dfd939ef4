"""Data-parallel training across processes (DDP), launched by `torchrun`.

`torchrun --nproc-per-node N [--nnodes M ...] -m sisr.cli train ...` sets
RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; a process started
without them is a world of one and uses no process group at all. NCCL is used
on GPUs, Gloo on CPU. Each process takes its own slice of every global batch
(see `sisr.data.training.StepSampler`), and only rank 0 writes files.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from ..errors import SisrError


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that validates and writes checkpoints, weights and logs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(option: str, local_rank: int = 0) -> torch.device:
    """ "auto": this process's GPU if there is one, else the CPU."""
    if option == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(option)
    except RuntimeError:
        raise SisrError(f"train.device: {option!r} is not a device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SisrError(
                f"train.device={option}: this torch build or machine has no CUDA "
                "(--device cpu trains on the CPU instead)"
            )
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
    return device


def setup(device_option: str = "auto") -> DistributedContext:
    """Join the process group torchrun describes in the environment, if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_option, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistributedContext(rank, world_size, local_rank, device)


def teardown(context: DistributedContext) -> None:
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(context: DistributedContext) -> None:
    if context.distributed:
        dist.barrier()


def broadcast_object(context: DistributedContext, value: Any) -> Any:
    """Rank 0's `value` on every rank (e.g. the checkpoint, read from rank 0's disk only)."""
    if not context.distributed:
        return value
    holder = [value if context.is_main else None]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


T = TypeVar("T")


def on_main(context: DistributedContext, action: Callable[[], T]) -> T | None:
    """Run `action` on rank 0 only; a SisrError there is raised on every rank, so none waits forever."""
    value, failure = None, None
    if context.is_main:
        try:
            value = action()
        except SisrError as error:
            failure = str(error)
            if not context.distributed:
                raise
    failure = broadcast_object(context, failure)
    if failure is not None:
        raise SisrError(failure)
    return value


def any_rank(context: DistributedContext, flag: bool) -> bool:
    """True on every rank when it is true on any: all stop together after a signal."""
    if not context.distributed:
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=context.device if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item() > 0)


def sync_batch_norm(model: nn.Module, device: torch.device) -> nn.Module:
    """Batch norm layers (SRResNet's) that share their batch statistics across processes, on GPUs.

    Each process sees 1/N of the global batch; per-process statistics would
    make the network depend on the number of processes. The layers are
    replaced inside `model` (same parameters and buffers, same state-dict
    keys). PyTorch synchronises batch norm only on GPUs: on the CPU the
    statistics stay per process, and a warning says so.
    """
    norms = [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, nn.SyncBatchNorm)
    ]
    if not norms:
        return model
    if device.type != "cuda":
        import logging

        logging.getLogger("sisr").warning(
            "%d batch norm layer(s): their batch statistics are per process on %s (PyTorch synchronises "
            "batch norm only on GPUs); the result differs a little from one process on the global batch",
            len(norms),
            device.type,
        )
        return model
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if converted is not model:
        raise SisrError("a bare batch norm layer cannot be trained under DDP; wrap it in a network")
    return model


def wrap(model: nn.Module, context: DistributedContext) -> nn.Module:
    """DDP around the network when there are several processes (it averages the gradients)."""
    if not context.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    sync_batch_norm(model, context.device)
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)
