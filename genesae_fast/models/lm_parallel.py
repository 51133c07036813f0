"""Data-parallel worker processes for ``genesae lm train``: one torch thread each, gloo all-reduce.

Why processes and not threads: on a shared 2-core machine torch's intra-op threads wait on
each other at every operator (measured: 0.4 steps/s with 2 threads against 3.4 with one),
while worker processes meet once a step, to sum their gradients. Every worker builds the
same global batch from ``(seed, step)`` and trains on its own share of the windows, so
the summed gradient is the gradient of the whole batch whatever the number of workers
(up to the order of float additions): the same seed and worker count give the same weights.

The workers rendezvous through a file (no network port); rank 0 owns the progress bar and
the checkpoints.
"""
from __future__ import annotations

import os
import tempfile
import time
from typing import Callable


class LocalComm:
    """The collective operations of a single process: nothing to exchange."""

    rank = 0
    world = 1

    def sum_(self, tensor):
        """Sum ``tensor`` over the workers, in place; returns it."""
        return tensor

    def max_float(self, value: float) -> float:
        """The largest ``value`` of all workers."""
        return float(value)


class GlooComm(LocalComm):
    """Collectives over an initialised ``torch.distributed`` gloo group."""

    def __init__(self, rank: int, world: int):
        import torch.distributed as dist

        self.rank, self.world, self._dist = rank, world, dist

    def sum_(self, tensor):
        self._dist.all_reduce(tensor, op=self._dist.ReduceOp.SUM)
        return tensor

    def max_float(self, value: float) -> float:
        import torch

        t = torch.tensor([float(value)], dtype=torch.float64)
        self._dist.all_reduce(t, op=self._dist.ReduceOp.MAX)
        return float(t.item())


def sum_gradients(comm: LocalComm, parameters) -> None:
    """Replace every parameter's gradient by its sum over the workers (one all-reduce)."""
    import torch

    params = [p for p in parameters if p.grad is not None]
    if comm.world == 1 or not params:
        return
    flat = comm.sum_(torch.cat([p.grad.reshape(-1) for p in params]))
    offset = 0
    for p in params:
        n = p.grad.numel()
        p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
        offset += n


PARENT_CHECK_SECONDS = 1.0


def exit_with_parent(parent: int, every: float = PARENT_CHECK_SECONDS) -> None:
    """Start a daemon thread that ends this process once ``parent`` is gone.

    Why: ``mp.spawn`` children do not die with their parent. A ``genesae lm train`` killed by
    SIGTERM or SIGKILL left its workers training on, busy for the rest of the budget and
    slowing whatever ran next. A child whose parent died is re-parented, so its parent id
    changes."""
    import threading

    def watch():
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _worker(rank: int, world: int, rendezvous: str, threads: int, fn: Callable, args: tuple, parent: int) -> None:
    import torch
    import torch.distributed as dist

    exit_with_parent(parent)
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        fn(GlooComm(rank, world), *args)
    finally:
        dist.destroy_process_group()


def run_workers(world: int, fn: Callable, args: tuple, *, threads: int = 1) -> None:
    """Run ``fn(comm, *args)`` in ``world`` spawned processes (``fn`` and ``args`` picklable).

    ``world`` 1 runs ``fn`` in this process with :class:`LocalComm` and ``threads`` torch
    threads. A worker's exception is raised here.
    """
    import torch

    if world == 1:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            fn(LocalComm(), *args)
        finally:
            torch.set_num_threads(before)
        return
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="genesae-lm-") as tmp:
        mp.spawn(_worker, args=(world, os.path.join(tmp, "rendezvous"), threads, fn, args, os.getpid()),
                 nprocs=world, join=True)


__all__ = ["GlooComm", "LocalComm", "exit_with_parent", "run_workers", "sum_gradients"]
