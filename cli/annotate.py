"""``genesae annotate``: label SAE features with motifs, gene structure and k-mers."""
from __future__ import annotations

import click

from genesae_fast.cli.options import threads_option


@click.command()
@click.option("--store", "store", required=True, type=click.Path(), help="Activation store (genesae extract).")
@click.option("--sae", "sae", required=True, type=click.Path(file_okay=False), help="SAE folder (genesae train).")
@click.option("--genome", "genome", type=click.Path(dir_okay=False), default=None,
              help="FASTA the store was made from.  [default: the genome recorded in the store]")
@click.option("--motifs", default="jaspar2024:CORE:vertebrates", show_default=True,
              help="Motif SPEC (jaspar2024:CORE:vertebrates ...) or a MEME/JASPAR/TRANSFAC file; 'none' to skip.")
@click.option("--gff", type=click.Path(dir_okay=False, exists=True), default=None,
              help="GFF3 with CDS features for gene-structure concepts.  [default: genes predicted by pyrodigal]")
@click.option("--out", "-o", "out", required=True, type=click.Path(file_okay=False), help="Annotation folder to write.")
@click.option("--pvalue", type=click.FloatRange(0, 1, min_open=True), default=1e-4, show_default=True,
              help="Motif scanning p-value threshold.")
@click.option("--shuffles", type=click.IntRange(min=1), default=1, show_default=True,
              help="Column-shuffled control motifs per motif.")
@click.option("--min-active", type=click.IntRange(min=1), default=20, show_default=True,
              help="Features active on fewer tokens are not tested.")
@click.option("--qvalue", type=click.FloatRange(0, 1), default=0.05, show_default=True,
              help="q-value level for calling a concept.")
@click.option("--no-neurons", is_flag=True, help="Skip the neuron baseline.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the shuffled controls.")
@threads_option
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes for the genome blocks (one torch thread each).  "
                   "[default: all cores; under torchrun the cores of each local rank]")
@click.option("--block-bp", type=click.IntRange(min=1000), default=262_144, show_default=True,
              help="Bases per block: the memory of each worker grows with it, the tables do not change.")
@click.option("--checkpoint-blocks", type=click.IntRange(min=1), default=4, show_default=True,
              help="Blocks between two checkpoints; an interrupted run resumes from the last one.")
@click.option("--overwrite", is_flag=True, help="Replace an annotation already in --out.")
@click.option("--strands", type=click.Choice(["auto", "both", "forward"]), default="auto", show_default=True,
              help="Pool the reverse-complement pass (STORE's sibling S.rc.zarr from `genesae extract --strands "
                   "both`) per base and score motifs per strand: auto when it is there, both requires it.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def annotate(store, sae, genome, motifs, gff, out, pvalue, shuffles, min_active, qvalue, no_neurons, seed, threads,
             workers, block_bp, checkpoint_blocks, overwrite, strands, quiet):
    """Annotate every SAE feature: firing statistics, top examples, an activation-weighted
    logo with its best JASPAR match, the top k-mer, and concept matches (InterPLM style:
    precision per base, recall per hit, F1 at the best of several thresholds, chosen on
    one half of the genome and reported on the other) for TF motifs (significance from
    column-shuffled control motifs, Benjamini-Hochberg q-values) and gene structure (CDS,
    start/stop codons, RBS, codon positions, intergenic), against the raw neurons too.

    Writes features.tsv, feature_motif.tsv, feature_concept.tsv, concepts.tsv,
    examples.parquet, logos.json, summary.json, tracks/*.bedGraph and motif_hits.bed.

    Streams: the genome is read in blocks of --block-bp bases by --workers processes
    (memory does not grow with the genome). Interrupted (Ctrl-C, kill), rerun the same
    command: it resumes from the last checkpoint and gives the same tables. Under
    torchrun the ranks share the blocks and rank 0 writes the folder (the store and
    OUT on a file system every rank sees).
    """
    from genesae_fast.annotate.core import Config
    from genesae_fast.annotate.folder import annotate as run_annotate

    cfg = Config(pvalue=pvalue, n_shuffles=shuffles, min_active=min_active, qvalue=qvalue, neurons=not no_neurons,
                 seed=seed, threads=threads, block_bp=block_bp)
    spec = None if motifs.lower() == "none" else motifs
    summary = run_annotate(store, sae, out, genome=genome, motifs=spec, gff=gff, cfg=cfg, progress=not quiet,
                           overwrite=overwrite, workers=workers, checkpoint_blocks=checkpoint_blocks, strands=strands)
    click.echo(f"{out}: {summary['features_tested']} features tested; {summary['features_with_motif']} with a motif, "
               f"{summary['features_with_gene_concept']} with a gene-structure concept (q <= {qvalue})", err=True)
