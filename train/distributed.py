"""Multi-GPU data parallelism under ``torchrun`` (DDP).

``torchrun --nproc_per_node 8 -m corpusmill train ...`` starts one process per GPU with
WORLD_SIZE, RANK and LOCAL_RANK set. Each rank takes every WORLD_SIZE-th row of the epoch's
seeded order (:class:`corpusmill.train.data.BatchOrder`), gradients are averaged by DDP, the loss
is weighted by the target tokens of all ranks, and only rank 0 writes files. With WORLD_SIZE
unset or 1, nothing here does anything.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum(self, value: float, device: torch.device) -> float:
        """The sum of ``value`` over ranks (the value itself on one process)."""
        if not self.enabled:
            return value
        t = torch.tensor([float(value)], dtype=torch.float64, device=device)
        torch_dist.all_reduce(t, op=torch_dist.ReduceOp.SUM)
        return float(t.item())

    def barrier(self) -> None:
        if self.enabled:
            torch_dist.barrier()


def init() -> Dist:
    """Join the process group when torchrun started several processes."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not torch_dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        torch_dist.init_process_group(backend=backend)
    return Dist(rank, world, local_rank)


def wrap(model: torch.nn.Module, dist: Dist, device: torch.device) -> torch.nn.Module:
    if not dist.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def sync_gradients(model: torch.nn.Module, sync: bool):
    """DDP all-reduces gradients on every backward; skip that on all but the last micro-batch."""
    if sync or not hasattr(model, "no_sync"):
        return contextlib.nullcontext()
    return model.no_sync()


def shutdown(dist: Dist) -> None:
    if dist.enabled and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
