"""``genesae train``: a TopK sparse autoencoder on an activation store."""
from __future__ import annotations

import decimal
import math
import re
import sys

import click

_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9}
# The largest count any option takes: 10^15 tokens is ~10^6 passes over a human genome's
# tokens, and every count up to it is exact in float64 and int64.
MAX_COUNT = 10**15


class Count(click.ParamType):
    """A positive count written plainly, in scientific notation or with a k/M/G suffix
    (``5000000``, ``5e6``, ``5M``), at most ``maximum``."""

    name = "count"

    def __init__(self, maximum: int = MAX_COUNT):
        self.maximum = int(maximum)

    def convert(self, value, param, ctx):
        if isinstance(value, int) and not isinstance(value, bool):
            number = decimal.Decimal(value)
        else:
            m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[+]?[0-9]{1,4})?)\s*([kmgb]?)\s*", str(value),
                             flags=re.IGNORECASE)
            if not m:
                self.fail(f"{value!r} is not a count (examples: 5000000, 5e6, 5M)", param, ctx)
            # Decimal, not float: exact (enough digits for the whole text), and 1e400 is
            # not inf
            with decimal.localcontext(decimal.Context(prec=len(str(value)) + 12)):
                number = decimal.Decimal(m.group(1)) * _SUFFIX[m.group(2).lower()]
        if number != number.to_integral_value() or number < 1:
            self.fail(f"{value!r} must be a whole number of at least 1", param, ctx)
        if number > self.maximum:
            self.fail(f"{value!r} is more than the largest allowed, {self.maximum:.3g}", param, ctx)
        return int(number)


class FiniteFloat(click.ParamType):
    """A finite float (no nan/inf) of at least ``minimum`` (exclusive when ``open_min``)."""

    name = "float"

    def __init__(self, minimum: float | None = None, open_min: bool = False):
        self.minimum, self.open_min = minimum, open_min

    def convert(self, value, param, ctx):
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        low = self.minimum
        if low is not None and (number < low or (self.open_min and number == low)):
            self.fail(f"{value!r} must be {'>' if self.open_min else '>='} {low:g}", param, ctx)
        return number


def check_device(ctx, param, value):
    """``--device``: cpu, cuda, cuda:N (an existing GPU) or mps, checked before any work."""
    if value is None:
        return None
    import torch

    try:
        dev = torch.device(value)
    except (RuntimeError, ValueError, TypeError):
        raise click.BadParameter(f"{value!r} is not a torch device (examples: cpu, cuda, cuda:0)") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise click.BadParameter(f"{value!r}: no CUDA GPU is available")
        if dev.index is not None and dev.index >= count:
            raise click.BadParameter(f"{value!r}: this machine has {count} CUDA GPU(s) (cuda:0 to cuda:{count - 1})")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise click.BadParameter(f"{value!r}: MPS is not available on this machine")
    elif dev.type != "cpu":
        raise click.BadParameter(f"{value!r}: expected cpu, cuda, cuda:N or mps")
    return value


COUNT = Count()
# Latent indices are int32 in the kernels.
LATENTS = Count(maximum=2**31 - 1)
SMALL_INT = click.IntRange(min=1, max=2**31 - 1)


@click.command()
@click.option("--store", "store", required=True, type=click.Path(),
              help="Activation store (from `genesae extract` or `genesae import`).")
@click.option("--out", "out", required=True, type=click.Path(),
              help="SAE folder to write (resumed when it holds an unfinished run).")
@click.option("--latents", type=LATENTS, default=None, help="Number of latents.  [default: expansion x d]")
@click.option("--expansion", type=click.IntRange(min=1, max=1 << 16), default=16, show_default=True,
              help="Latents per input dimension, when --latents is not given.")
@click.option("--k", "k", type=SMALL_INT, default=32, show_default=True, help="Active latents per token.")
@click.option("--batch", "batch", type=COUNT, default=4096, show_default=True,
              help="Tokens per step (per process under torchrun).")
@click.option("--tokens", type=COUNT, default=None,
              help="Training tokens in all (e.g. 5M).  [default: 5 passes over the store, 200 batches to 200M]")
@click.option("--lr", type=FiniteFloat(0.0, open_min=True), default=None,
              help="Adam learning rate.  [default: 2e-4 / sqrt(latents / 2^14)]")
@click.option("--seed", type=click.IntRange(min=0, max=2**63 - 1), default=0, show_default=True,
              help="Initialisation and data order.")
@click.option("--batch-topk", is_flag=True, help="BatchTopK: the batch's B*k largest codes instead of k per token.")
@click.option("--aux-k", type=SMALL_INT, default=None, help="Dead latents in the AuxK loss.  [default: d/2]")
@click.option("--aux-coef", type=FiniteFloat(0.0), default=1 / 32, show_default="1/32",
              help="Weight of the AuxK loss.")
@click.option("--dead-tokens", type=COUNT, default=None,
              help="A latent is dead after this many tokens without firing.  [default: a fifth of the run, at most 10M]")
@click.option("--checkpoint-every", "checkpoint_tokens", type=COUNT, default=None,
              help="Checkpoint interval in tokens.  [default: a tenth of the run, at most 50M]")
@click.option("--device", default=None, callback=check_device,
              help="torch device: cpu, cuda, cuda:N or mps.  [default: cuda if available, else cpu]")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch CPU threads (speed only: the weights do not depend on it).  "
                   "[default: auto, the faster of 1 and all cores, re-measured every 2 minutes]")
@click.option("--no-eval", is_flag=True, help="Skip the held-out evaluation (eval.json).")
@click.option("--no-lm-loss", is_flag=True, help="Skip the LM loss check in the evaluation.")
@click.option("--overwrite", is_flag=True, help="Discard an SAE or checkpoint already in --out.")
@click.option("--strands", type=click.Choice(["auto", "both", "forward"]), default="auto", show_default=True,
              help="Train on the reverse-complement pass too (the store S.rc.zarr beside STORE, written by "
                   "`genesae extract --strands both`): auto when it is there, both requires it, forward ignores it.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(store, out, latents, expansion, k, batch, tokens, lr, seed, batch_topk, aux_k, aux_coef, dead_tokens,
          checkpoint_tokens, device, threads, no_eval, no_lm_loss, overwrite, strands, quiet):
    """Train a TopK sparse autoencoder on the activations in STORE.

    Inputs are centred and scaled by the store's statistics; the last 1% of its chunks
    are held out for evaluation (eval.json). Progress: tokens/s, FVU (fraction of
    variance unexplained), L0, dead-latent fraction and AuxK loss, also appended to
    OUT/metrics.jsonl. Checkpoints go to OUT/trainer_state.pt periodically and on
    Ctrl-C/SIGTERM; run the same command again to resume. Under torchrun, processes
    train data-parallel, each reading its share of the store.

    \b
    Example:
      genesae train --store acts.zarr --out sae/ --latents 1024 --k 8 --tokens 5M
    """
    from genesae_fast.train import TrainingInterrupted, train_sae

    try:
        path = train_sae(store, out, latents=latents, expansion=expansion, k=k, batch_size=batch, tokens=tokens,
                         lr=lr, seed=seed, batch_topk=batch_topk, k_aux=aux_k, aux_coef=aux_coef,
                         dead_tokens=dead_tokens, checkpoint_tokens=checkpoint_tokens, device=device, threads=threads,
                         evaluate=not no_eval, lm_loss=not no_lm_loss, overwrite=overwrite, progress=not quiet,
                         strands=strands)
    except TrainingInterrupted as exc:
        click.echo(str(exc), err=True)
        sys.exit(128 + exc.signum)
    if not quiet:
        click.echo(f"SAE written to {path}", err=True)
