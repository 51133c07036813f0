"""Device choice and the few collective operations of data-parallel training (torchrun).

With one process every helper is a no-op or the identity, so the single-process path
never touches ``torch.distributed``.
"""
from __future__ import annotations

import os

import torch


def dist_setup(device_type: str) -> tuple[int, int, bool]:
    """``(rank, world_size, owned)`` from torchrun's environment; ``owned`` when we created the group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        return dist.get_rank(), dist.get_world_size(), True
    return 0, 1, False


def resolve_device(device) -> torch.device:
    """``device`` (default cuda when available, else cpu); under torchrun, cuda means this rank's GPU."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return dev


def barrier(world: int) -> None:
    """Wait for every rank (nothing to wait for with one process)."""
    if world > 1:
        torch.distributed.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """A copy of ``t`` summed over ranks."""
    import torch.distributed as dist

    t = t.clone()
    dist.all_reduce(t)
    return t


def all_reduce_max(t: torch.Tensor) -> torch.Tensor:
    """A copy of ``t``, element-wise maximum over ranks."""
    import torch.distributed as dist

    t = t.clone()
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def agree_on_stop(signum: int, world: int, dev) -> int:
    """A signal on any rank stops every rank at the same step."""
    if world == 1:
        return signum
    return int(all_reduce_max(torch.tensor([signum], dtype=torch.int64, device=dev)).item())


__all__ = ["agree_on_stop", "all_reduce_max", "all_reduce_sum", "barrier", "dist_setup", "resolve_device"]
