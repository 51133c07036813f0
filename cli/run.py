"""``genesae run``: the whole pipeline with sensible defaults."""
from __future__ import annotations

import click

from genesae_fast.cli.options import genome_option, strands_option, threads_option


@click.command()
@genome_option
@click.option("--model", default="builtin", show_default=True, help="'builtin' or a local model folder.")
@click.option("--layer", default="auto", show_default=True, metavar="auto|N|N,M,...",
              help="Model layer: 'auto' compares candidate layers (built-in model: receptive field 3-63 bp) by "
                   "a small SAE each on the select split and keeps the best (layers.tsv); a list (2,3) "
                   "compares those; a number takes that layer.")
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
              help="Run only these comma-separated stages (layers,extract,train,annotate,causal,seeds,control,"
                   "report), e.g. extract,train on a GPU machine and annotate elsewhere; extract brings the layer "
                   "choice along.  [default: all]")
@click.option("--causal/--no-causal", "causal", default=None,
              help="The causal stage (`genesae causal`: feature ablations at concept sites).  [default: on for "
                   "the built-in model and `genesae lm train` folders]")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--seeds", type=click.IntRange(min=1, max=5), default=1, show_default=True,
              help="SAE seeds: 2 or 3 also train and annotate seed+1.. and report the spread of each concept's "
                   "held-out best F1 (seeds.tsv); each extra seed costs about one train + annotate stage.")
@click.option("--device", default=None, help="torch device.  [default: cuda if available, else cpu]")
@click.option("--workers", type=click.IntRange(min=1), default=None, show_default="all cores",
              help="Extraction worker processes on CPU (one torch thread each; the store is the same for any number).")
@strands_option("auto", "Also run the model on the reverse complement (both): the SAE trains on both passes, "
                        "features are pooled per base (max of the two) and motif concepts are also scored per "
                        "strand. auto: both for models that read one direction (the built-in one), forward for "
                        "bidirectional ones.")
@click.option("--control-untrained/--no-control-untrained", default=False, show_default=True,
              help="Also run a randomly initialised copy of the LM (same architecture, seed 0) through extract, "
                   "train and annotate into OUT/controls/untrained/, as the report's reference line: what a model "
                   "that learned nothing gives. Off by default because it doubles the run time (annotation "
                   "dominates both runs). Built-in or `genesae lm train` models only.")
@threads_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def run(genome, model, layer, motifs, gff, out, quick, train_tokens, stages, causal, seed, seeds, device, workers,
        strands, control_untrained, threads, quiet):
    """Extract activations, train a TopK SAE, annotate its features and write the HTML
    atlas, into OUT. Each stage is skipped when its output is complete, so rerunning after
    a crash continues.

    With --layer auto (the default) it first compares candidate layers on the select half of
    the held-out split (never on the half it reports F1 on) and keeps the best.

    Before any work it prints the plan: genome size, tokens per stage, training tokens and
    a rough time per stage (from the built-in model's per-token rates on one CPU core).
    Ends with a summary: FVU, L0, dead fraction, the features with a significant motif or
    gene-structure concept, the best ten, and the report's path."""
    from genesae_fast.pipeline import RunSettings, format_summary, run_pipeline

    spec = None if motifs.lower() == "none" else motifs
    settings = RunSettings.quick() if quick else RunSettings()
    settings.train_tokens_override = train_tokens
    settings.seeds = seeds
    settings.causal = causal
    summary = run_pipeline(out, genome=genome, model=model, layer=layer, motifs=spec, quick=quick, gff=gff,
                           threads=threads, workers=workers, seed=seed, device=device, progress=not quiet,
                           strands=strands,
                           settings=settings, only=None if stages is None else [x.strip() for x in stages.split(",")],
                           echo=lambda m: click.echo(m, err=True), control_untrained=control_untrained)
    if "report" in summary:
        click.echo(format_summary(summary))
    else:
        click.echo("stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in summary["stage_seconds"].items()))
