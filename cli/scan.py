"""``genesae scan``: TF motif hits over a genome, FIMO's hits and columns."""
from __future__ import annotations

import os
import sys

import click

from genesae_fast.cli.options import genome_option, threads_option


@click.command()
@genome_option
@click.option("--motifs", "motif_spec", default="jaspar2024:CORE:vertebrates", show_default=True,
              help="jasparYYYY:COLLECTION:TAXON (2024 CORE vertebrates ships; others need pyjaspar) "
                   "or a MEME, JASPAR (.jaspar/.pfm) or TRANSFAC file.")
@click.option("--pvalue", type=click.FloatRange(0, 1, min_open=True), default=1e-4, show_default=True,
              help="Report windows with p < PVALUE (FIMO's --thresh).")
@click.option("--bg", "background", default="nrdb", show_default=True,
              help="Background: nrdb (FIMO's default), uniform, motif (the motif file's), "
                   "sequence (the genome's composition) or a MEME background FILE.")
@click.option("--motif-pseudo", type=click.FloatRange(min=0), default=0.1, show_default=True,
              help="Pseudocount added to the motifs, spread by the background (FIMO's --motif-pseudo).")
@click.option("--norc", is_flag=True, help="Scan the given strand only (FIMO's --norc).")
@threads_option
@click.option("--out", "-o", type=click.Path(dir_okay=False), default="-", show_default="stdout",
              help="Output file.")
@click.option("--bed", is_flag=True, help="Write BED (0-based, half-open) instead of FIMO's TSV.")
def scan(genome: str, motif_spec: str, pvalue: float, background: str, motif_pseudo: float, norc: bool,
         threads: int, out: str, bed: bool) -> None:
    """Find TF motif occurrences with FIMO's scores, p-values and hits, on both strands.

    Writes FIMO's TSV columns (motif_id, motif_alt_id, sequence_name, start, stop, strand,
    score, p-value, q-value, matched_sequence; 1-based inclusive coordinates) or BED.
    Every hit is written (FIMO's own command line keeps only 100,000 by default).
    """
    import time

    from genesae_fast.motifs import load_motifs
    from genesae_fast.scan import scan_motifs, write_bed, write_tsv
    from genesae_fast.sequences import read_fasta

    t0 = time.perf_counter()
    motifs = load_motifs(motif_spec)
    records = read_fasta(genome)
    hits = scan_motifs(records, motifs, pvalue=pvalue, threads=threads, background=background,
                       motif_pseudo=motif_pseudo, both_strands=not norc, motif_file=motif_spec)
    writer = write_bed if bed else write_tsv
    if out == "-":
        writer(hits, records, motifs, sys.stdout)
    else:
        tmp = out + ".tmp"
        try:
            with open(tmp, "w") as fh:
                writer(hits, records, motifs, fh)
            os.replace(tmp, out)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        click.echo(f"{len(hits):,} hits of {len(motifs)} motifs in {len(records)} sequences "
                   f"({time.perf_counter() - t0:.2f} s) -> {out}", err=True)
