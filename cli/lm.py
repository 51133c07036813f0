"""``genesae lm train``: train the built-in gene language model on a genome."""
from __future__ import annotations

import click

from genesae_fast.cli.options import genome_option


@click.group()
def lm() -> None:
    """The built-in gene language model (a gated causal dilated CNN, 1 token = 1 bp)."""


@lm.command()
@genome_option
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Model folder (resumes if it holds a checkpoint); a valid --model afterwards.")
@click.option("--minutes", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Wall-clock training budget in total, resumed time included.")
@click.option("--layers", "n_layers", type=click.IntRange(min=1, max=16), default=6, show_default=True,
              help="Blocks (block i has dilation 2^(i-1); receptive field 2^(i+1)-1 bp).")
@click.option("--d-model", type=click.IntRange(min=4), default=48, show_default=True, help="Channels.")
@click.option("--context", type=click.IntRange(min=2), default=512, show_default=True,
              help="Training window in bp.")
@click.option("--batch", "batch_size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Windows per step.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=3e-3, show_default=True,
              help="Peak learning rate (AdamW, cosine over the budget).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch threads [default: auto, the faster of 1 and all cores, re-measured every 2 minutes].")
def train(genome, out, minutes, n_layers, d_model, context, batch_size, lr, seed, threads) -> None:
    """Train on GENOME with the last 5% of every record held out; write OUT/metrics.json
    with held-out bits/bp beside the best order-k Markov model (k = 0..10)."""
    from genesae_fast.models.lm_train import train_lm

    metrics = train_lm(genome, out, minutes=minutes, n_layers=n_layers, d_model=d_model, context=context,
                       seed=seed, batch_size=batch_size, lr=lr, threads=threads)
    click.echo(
        f"held-out {metrics['heldout_bits_per_bp']:.4f} bits/bp; best Markov (order "
        f"{metrics['markov_order']}) {metrics['markov_bits_per_bp']:.4f} bits/bp; "
        f"{metrics['steps']} steps in {metrics['train_seconds']:.0f} s -> {out}"
    )
