"""``genesae lm``: train the built-in gene language model on a genome, or write an untrained one."""
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
@click.option("--steps", type=click.IntRange(min=0), default=None,
              help="Stop after this many steps and lay the learning-rate schedule over them (then the same "
                   "seed and --workers give the same weights).  [default: the schedule follows --minutes]")
@click.option("--layers", "n_layers", type=click.IntRange(min=1, max=16), default=6, show_default=True,
              help="Blocks (block i has dilation 2^(i-1); receptive field 2^(i+1)-1 bp).")
@click.option("--d-model", type=click.IntRange(min=4), default=48, show_default=True, help="Channels.")
@click.option("--context", type=click.IntRange(min=2), default=512, show_default=True,
              help="Training window in bp.")
@click.option("--batch", "batch_size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Windows per step (split over the workers).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=3e-3, show_default=True,
              help="Peak learning rate (AdamW, cosine over the budget).")
@click.option("--eval-every", type=click.IntRange(min=0), default=100, show_default=True,
              help="Steps between held-out checks (first half of the held-out 5%), reported in metrics.json.")
@click.option("--patience", type=click.IntRange(min=0), default=0, show_default=True,
              help="Stop after this many held-out checks without improvement and keep the best checked "
                   "weights (0: train the whole budget and keep the last weights; on a small genome the "
                   "held-out bits stall long before the LM has learned its repeated elements).")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Dropout on each block's residual branch while training (0: none).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Data-parallel worker processes; their gradients are summed every step, so the batches do "
                   "not depend on it.  [default: the cores not busy with other work (sampled when training "
                   "starts), at least 1]")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="torch threads per worker (one is fastest on a shared machine).")
def train(genome, out, minutes, steps, n_layers, d_model, context, batch_size, lr, eval_every, patience, dropout,
          seed, workers, threads) -> None:
    """Train on GENOME with the last 5% of every record held out (its first half is checked
    during training, and with --patience picks the weights and the stopping step; its second
    half is the untouched test); write
    OUT/metrics.json with held-out and test bits/bp beside the best order-k Markov model
    (k = 0..10) and the held-out curve."""
    from genesae_fast.models.lm_train import train_lm

    metrics = train_lm(genome, out, minutes=minutes, steps=steps, n_layers=n_layers, d_model=d_model,
                       context=context, seed=seed, batch_size=batch_size, lr=lr, eval_every=eval_every,
                       patience=patience, dropout=dropout, workers=workers, threads=threads)
    click.echo(
        f"held-out {metrics['heldout_bits_per_bp']:.4f} bits/bp, test half {metrics['test_bits_per_bp']:.4f}; "
        f"best Markov (order {metrics['markov_order']}) {metrics['markov_bits_per_bp']:.4f} bits/bp; "
        f"{metrics['steps']} steps ({metrics['stop_reason']}), kept the {metrics['kept_weights']} weights "
        f"(best check: step {metrics['best_step']}), "
        f"{metrics['train_seconds']:.0f} s on {metrics['workers']} workers -> {out}"
    )


@lm.command()
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--like", default="builtin", show_default=True,
              help="'builtin' or a `genesae lm train` folder whose architecture to copy.")
@click.option("--seed", type=int, default=0, show_default=True, help="Initialisation seed.")
def init(out, like, seed) -> None:
    """Write a randomly initialised LM into OUT (same architecture as --like, no training):
    a valid --model, the "learned nothing" control."""
    from genesae_fast.models.untrained import write_untrained

    write_untrained(out, like=like, seed=seed)
    click.echo(f"untrained LM (seed {seed}) -> {out}")
