"""Data parallelism through PyTorch's own engine: ``torchrun --nproc_per_node N -m cnnlab train ...``.

torchrun sets RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR; each process trains on its shard of every
epoch's permutation, gradients are averaged by DDP, metric sums are all-reduced and only rank 0
writes files or draws progress.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def setup(device_type: str) -> Context:
    """Join the process group torchrun describes (gloo on CPU, nccl on GPU); one process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context()
    if device_type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))  # before NCCL picks a device
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return Context(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def shard(order: torch.Tensor, ctx: Context) -> torch.Tensor:
    """This rank's part of an epoch's order, wrapped so every rank runs the same number of steps."""
    if not ctx.active:
        return order
    n = -(-order.numel() // ctx.world) * ctx.world
    if n > order.numel():
        order = torch.cat([order, order[: n - order.numel()]])
    return order[ctx.rank::ctx.world]


def all_sum(t: torch.Tensor, ctx: Context) -> torch.Tensor:
    if ctx.active:
        dist.all_reduce(t)
    return t


def broadcast_flag(flag: bool, ctx: Context) -> bool:
    """Rank 0's decision (stop early, diverged) for every rank, so no rank waits in a collective alone."""
    if not ctx.active:
        return flag
    t = torch.tensor([int(flag)])
    dist.broadcast(t, 0)
    return bool(t.item())


def teardown(ctx: Context) -> None:
    """Leave the group together: a rank that destroys it while rank 0 is still writing files aborts
    in gloo's threads. After a failure the group is left to torchrun, which stops the other ranks."""
    if ctx.active and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
