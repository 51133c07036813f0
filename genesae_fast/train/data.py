"""Training batches from an activation store, with a position that checkpoints can resume."""
from __future__ import annotations

import torch

from genesae_fast.train.distributed import all_reduce_sum

# Stores up to this size are loaded once and shuffled row by row; larger ones stream groups
# of chunks. A fixed number (not a fraction of the machine's memory) so that the batches,
# and with them the trained weights, do not depend on the machine; small enough that
# training stays flat in memory from a bacterium to a human chromosome.
TRAIN_MEMORY_BUDGET = 512 << 20


class DataCursor:
    """Endless training batches for one rank, with a resumable position (epoch, batch).

    Each epoch takes the same number of batches on every rank (the smallest rank's count
    of full batches), so DDP ranks step together.
    """

    def __init__(self, store, batch_size: int, seed: int, rank: int, world: int, chunks: range):
        self.store, self.b, self.seed = store, batch_size, seed
        self.rank, self.world, self.chunks = rank, world, chunks
        self.epoch, self.batch = 0, 0
        self._it = None
        self._n = 0

    def steps_in_epoch(self, epoch: int) -> int:
        """Batches every rank takes in ``epoch``."""
        return min(self.store.epoch_rows(r, self.world, self.seed, epoch, self.chunks)
                   for r in range(self.world)) // self.b

    def _open(self):
        self._n = self.steps_in_epoch(self.epoch)
        self._it = self.store.batches(self.b, shuffle=True, seed=self.seed, rank=self.rank, world_size=self.world,
                                      epoch=self.epoch, chunks=self.chunks, drop_last=True,
                                      memory_budget=TRAIN_MEMORY_BUDGET)
        for _ in range(self.batch):  # resume: skip the batches already trained on
            next(self._it)

    def next(self) -> torch.Tensor:
        """The next ``[batch_size, d]`` float32 batch."""
        if self._it is None:
            self._open()
        if self.batch >= self._n:
            self.close()
            self.epoch += 1
            self.batch = 0
            self._open()
        x = next(self._it)
        self.batch += 1
        return x

    def close(self) -> None:
        """Stop the store's background reader."""
        if self._it is not None:
            self._it.close()
            self._it = None


def first_batch_mean(store, sae, batch_size: int, seed: int, rank: int, world: int, chunks: range, dev) -> torch.Tensor:
    """Mean ``[d]`` of the first training batch (normalised), averaged over ranks: b_dec's start."""
    it = store.batches(batch_size, shuffle=True, seed=seed, rank=rank, world_size=world, epoch=0, chunks=chunks,
                       drop_last=True, memory_budget=TRAIN_MEMORY_BUDGET)
    try:
        x = sae.normalize(next(it).to(dev))
    finally:
        it.close()
    mean = x.mean(0)
    if world > 1:
        mean = all_reduce_sum(mean) / world
    return mean.to(torch.float32)


__all__ = ["DataCursor", "first_batch_mean"]
