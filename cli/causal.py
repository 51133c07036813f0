"""``genesae causal``: causal evidence for the best (feature, concept) pairs of a run."""
from __future__ import annotations

import click


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--pairs", type=click.IntRange(min=1), default=20, show_default=True,
              help="Pairs tested: the concepts.tsv rows with the highest held-out F1.")
@click.option("--sites", type=click.IntRange(min=2), default=200, show_default=True,
              help="Held-out sites per pair (a random subset when the concept has more).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the site subsets, random intervals, random features and bootstrap.")
@click.option("--device", default=None, help="torch device.  [default: cuda if available, else cpu]")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def causal(run_dir, pairs, sites, seed, device, quiet):
    """Splice the SAE reconstruction into the LM at its layer, ablate one feature at a time
    (its decoder contribution removed where it fires) and measure the change in the LM's
    bits per base at the held-out sites of the feature's concept, against the same number
    of random intervals and against ablating a random feature of similar firing rate.

    RUN_DIR is a `genesae run` folder (store.zarr, sae/, annotate/). Writes
    RUN_DIR/annotate/causal.tsv (one row per pair: effects in bits per base, specificity
    ratios with bootstrap 95% intervals; columns in `python -m pydoc genesae_fast.causal`)
    and causal_* entries in annotate/summary.json; `genesae report RUN_DIR/annotate` shows
    the table. Needs a model that can run with a patched layer: the built-in model, or a
    character-level causal Hugging Face checkpoint with its LM head."""
    from genesae_fast.causal import run_causal

    out = run_causal(run_dir, n_pairs=pairs, max_sites=sites, seed=seed, device=device, progress=not quiet)
    click.echo(f"{out['causal_pairs_tested']} pairs tested, {out['causal_pairs_specific']} specific "
               f"(both ratio CIs above 1): {run_dir}/annotate/causal.tsv")
