"""``genesae train``: a TopK sparse autoencoder on an activation store."""
from __future__ import annotations

import re
import sys

import click

_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9}


class Count(click.ParamType):
    """A positive count written plainly, in scientific notation or with a k/M/G suffix
    (``5000000``, ``5e6``, ``5M``)."""

    name = "count"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kmgb]?)\s*", str(value), flags=re.IGNORECASE)
        if not m:
            self.fail(f"{value!r} is not a count (examples: 5000000, 5e6, 5M)", param, ctx)
        number = float(m.group(1)) * _SUFFIX[m.group(2).lower()]
        if number != int(number) or number < 1:
            self.fail(f"{value!r} must be a whole number of at least 1", param, ctx)
        return int(number)


COUNT = Count()


@click.command()
@click.option("--store", "store", required=True, type=click.Path(),
              help="Activation store (from `genesae extract` or `genesae import`).")
@click.option("--out", "out", required=True, type=click.Path(),
              help="SAE folder to write (resumed when it holds an unfinished run).")
@click.option("--latents", type=COUNT, default=None, help="Number of latents.  [default: expansion x d]")
@click.option("--expansion", type=click.IntRange(min=1), default=16, show_default=True,
              help="Latents per input dimension, when --latents is not given.")
@click.option("--k", "k", type=click.IntRange(min=1), default=32, show_default=True, help="Active latents per token.")
@click.option("--batch", "batch", type=COUNT, default=4096, show_default=True,
              help="Tokens per step (per process under torchrun).")
@click.option("--tokens", type=COUNT, default=None,
              help="Training tokens in all (e.g. 5M).  [default: 5 passes over the store, 200 batches to 200M]")
@click.option("--lr", type=float, default=None, help="Adam learning rate.  [default: 2e-4 / sqrt(latents / 2^14)]")
@click.option("--seed", type=int, default=0, show_default=True, help="Initialisation and data order.")
@click.option("--batch-topk", is_flag=True, help="BatchTopK: the batch's B*k largest codes instead of k per token.")
@click.option("--aux-k", type=click.IntRange(min=1), default=None, help="Dead latents in the AuxK loss.  [default: d/2]")
@click.option("--aux-coef", type=click.FloatRange(min=0), default=1 / 32, show_default="1/32",
              help="Weight of the AuxK loss.")
@click.option("--dead-tokens", type=COUNT, default=None,
              help="A latent is dead after this many tokens without firing.  [default: a fifth of the run, at most 10M]")
@click.option("--checkpoint-every", "checkpoint_tokens", type=COUNT, default=None,
              help="Checkpoint interval in tokens.  [default: a tenth of the run, at most 50M]")
@click.option("--device", default=None, help="torch device.  [default: cuda if available, else cpu]")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch CPU threads (speed only: the weights do not depend on it).  "
                   "[default: auto, the faster of 1 and all cores, re-measured every 2 minutes]")
@click.option("--no-eval", is_flag=True, help="Skip the held-out evaluation (eval.json).")
@click.option("--no-lm-loss", is_flag=True, help="Skip the LM loss check in the evaluation.")
@click.option("--overwrite", is_flag=True, help="Discard an SAE or checkpoint already in --out.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(store, out, latents, expansion, k, batch, tokens, lr, seed, batch_topk, aux_k, aux_coef, dead_tokens,
          checkpoint_tokens, device, threads, no_eval, no_lm_loss, overwrite, quiet):
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
                         evaluate=not no_eval, lm_loss=not no_lm_loss, overwrite=overwrite, progress=not quiet)
    except TrainingInterrupted as exc:
        click.echo(str(exc), err=True)
        sys.exit(128 + exc.signum)
    if not quiet:
        click.echo(f"SAE written to {path}", err=True)
