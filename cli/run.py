"""``genesae run``: the whole pipeline with sensible defaults."""
from __future__ import annotations

import click

from genesae_fast.cli.options import genome_option, threads_option


@click.command()
@genome_option
@click.option("--model", default="builtin", show_default=True, help="'builtin' or a local model folder.")
@click.option("--layer", type=click.IntRange(min=0), default=None,
              help="Model layer.  [default: the first block whose receptive field reaches a TF motif's width]")
@click.option("--motifs", default="jaspar2024:CORE:vertebrates", show_default=True,
              help="Motif SPEC or file; 'none' to skip motif concepts.")
@click.option("--gff", type=click.Path(dir_okay=False, exists=True), default=None,
              help="GFF3 for gene-structure concepts.  [default: pyrodigal's genes]")
@click.option("--out", "-o", "out", default="genesae_run", show_default=True, type=click.Path(file_okay=False),
              help="Output folder: store.zarr, sae/, annotate/ (report.html).")
@click.option("--quick", is_flag=True, help="A 250 kbp slice and a small SAE: a demonstration in one to two minutes on CPU.")
@click.option("--train-tokens", type=click.IntRange(min=1, max=10**12), default=None,
              help="SAE training tokens.  [default: one pass over the extracted tokens, at least 2M (several "
                   "passes on a small genome), at most 100M; 150k with --quick]")
@click.option("--stages", default=None, metavar="LIST",
              help="Run only these comma-separated stages (extract,train,annotate,causal,report), e.g. extract,train on "
                   "a GPU machine and annotate elsewhere.  [default: all]")
@click.option("--causal/--no-causal", "causal", default=None,
              help="The causal stage (`genesae causal`: feature ablations at concept sites).  [default: on for "
                   "the built-in model and `genesae lm train` folders]")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default=None, help="torch device.  [default: cuda if available, else cpu]")
@click.option("--workers", type=click.IntRange(min=1), default=None, show_default="all cores",
              help="Extraction worker processes on CPU (one torch thread each; the store is the same for any number).")
@threads_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def run(genome, model, layer, motifs, gff, out, quick, train_tokens, stages, causal, seed, device, workers, threads,
        quiet):
    """Extract activations, train a TopK SAE, annotate its features and write the HTML
    atlas, into OUT. Each stage is skipped when its output is complete, so rerunning after
    a crash continues.

    Before any work it prints the plan: genome size, tokens per stage, training tokens and
    a rough time per stage (from the built-in model's per-token rates on one CPU core).
    Ends with a summary: FVU, L0, dead fraction, the features with a significant motif or
    gene-structure concept, the best ten, and the report's path."""
    from genesae_fast.pipeline import RunSettings, format_summary, run_pipeline

    spec = None if motifs.lower() == "none" else motifs
    settings = RunSettings.quick() if quick else RunSettings()
    settings.train_tokens_override = train_tokens
    settings.causal = causal
    summary = run_pipeline(out, genome=genome, model=model, layer=layer, motifs=spec, quick=quick, gff=gff,
                           threads=threads, workers=workers, seed=seed, device=device, progress=not quiet,
                           settings=settings, only=None if stages is None else [x.strip() for x in stages.split(",")],
                           echo=lambda m: click.echo(m, err=True))
    if "report" in summary:
        click.echo(format_summary(summary))
    else:
        click.echo("stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in summary["stage_seconds"].items()))
