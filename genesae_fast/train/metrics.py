"""Training metrics between two ``metrics.jsonl`` records, as named float64 sums."""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from genesae_fast.train.distributed import all_reduce_sum


@dataclass
class MetricSums:
    """Sums over the batches since the last record (float64 scalars on the training device).

    FVU = ``err_sq / var`` (each batch's variance around its own mean); L0 and the AuxK
    loss are means over ``rows``.
    """

    err_sq: torch.Tensor  # sum of ||x - x_hat||^2
    var: torch.Tensor  # sum of ||x - batch mean||^2
    l0: torch.Tensor  # non-zero codes
    auxk_rows: torch.Tensor  # AuxK loss times the batch's rows
    rows: torch.Tensor

    @classmethod
    def zeros(cls, device) -> "MetricSums":
        """All sums at 0."""
        return cls(*(torch.zeros((), dtype=torch.float64, device=device) for _ in fields(cls)))

    @torch.no_grad()
    def add(self, x: torch.Tensor, res) -> None:
        """Add one batch: normalised rows ``x [B, d]`` and the objective's ``StepOutput``."""
        self.err_sq += res.err_sq_sum.double()
        self.var += (x - x.mean(0)).pow(2).sum().double()
        self.l0 += res.l0_sum.double()
        self.auxk_rows += res.auxk.double() * x.shape[0]
        self.rows += float(x.shape[0])

    def all_reduce(self) -> "MetricSums":
        """The sums over every rank (one collective)."""
        names = [f.name for f in fields(self)]
        total = all_reduce_sum(torch.stack([getattr(self, n) for n in names]))
        return MetricSums(*total.unbind())

    def record(self) -> dict:
        """``fvu``, ``l0`` and ``auxk_loss`` of the batches summed."""
        err_sq, var, l0, auxk_rows, rows = (float(getattr(self, f.name)) for f in fields(self))
        return {"fvu": err_sq / var if var > 0 else float("nan"), "l0": l0 / max(rows, 1),
                "auxk_loss": auxk_rows / max(rows, 1)}


__all__ = ["MetricSums"]
