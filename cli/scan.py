"""``genesae scan``: TF motif hits over a genome, FIMO's hits and columns, in bounded memory."""
from __future__ import annotations

import click

from genesae_fast.cli.options import genome_option, threads_option


@click.command()
@genome_option
@click.option("--motifs", "motif_spec", default="jaspar2024:CORE:vertebrates", show_default=True,
              help="jasparYYYY:COLLECTION:TAXON (2024 CORE vertebrates ships; others need pyjaspar) "
                   "or a MEME, JASPAR (.jaspar/.pfm) or TRANSFAC file.")
@click.option("--pvalue", type=float, default=1e-4, show_default=True,
              help="Report windows with p < PVALUE, in (0, 1] (FIMO's --thresh).")
@click.option("--bg", "background", default="nrdb", show_default=True,
              help="Background: nrdb (FIMO's default), uniform, motif (the motif file's), "
                   "sequence (the genome's composition) or a MEME background FILE.")
@click.option("--motif-pseudo", type=float, default=0.1, show_default=True,
              help="Pseudocount (finite, >= 0) added to the motifs, spread by the background "
                   "(FIMO's --motif-pseudo).")
@click.option("--norc", is_flag=True, help="Scan the given strand only (FIMO's --norc).")
@threads_option
@click.option("--out", "-o", type=click.Path(dir_okay=False), default="-", show_default="stdout",
              help="Output file (a FIFO or device is written through). A name ending in .gz is "
                   "BGZF-compressed; with --bed it is sorted by position and indexed (NAME.tbi).")
@click.option("--bed", is_flag=True, help="Write BED6+3 (0-based, half-open; chrom start end motif_id "
                                          "score strand p-value q-value motif_alt_id) instead of FIMO's TSV.")
@click.option("--tmp-dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="Folder for the temporary hit file (about 16 bytes a hit) [default: $TMPDIR].")
def scan(genome: str, motif_spec: str, pvalue: float, background: str, motif_pseudo: float, norc: bool,
         threads: int, out: str, bed: bool, tmp_dir: str | None) -> None:
    """Find TF motif occurrences with FIMO's scores, p-values and hits, on both strands.

    Writes FIMO's TSV columns (motif_id, motif_alt_id, sequence_name, start, stop, strand,
    score, p-value, q-value, matched_sequence; 1-based inclusive coordinates) or BED, motif
    by motif as FIMO does. Every hit is written (FIMO's own command line keeps only 100,000
    by default). The genome is read and scanned in blocks on --threads cores, hits wait in a
    compact temporary file, and q-values come from per-motif score histograms, so memory
    stays flat whatever the genome's size.
    """
    import time

    from genesae_fast.motifs import load_motifs
    from genesae_fast.scan_output import scan_to_path

    t0 = time.perf_counter()
    # motifs loaded while a reader thread decodes the genome's first pieces
    info = scan_to_path(genome, lambda: load_motifs(motif_spec), out, bed=bed, pvalue=pvalue, threads=threads, background=background,
                        motif_pseudo=motif_pseudo, both_strands=not norc, motif_file=motif_spec, tmp_dir=tmp_dir,
                        progress=True)
    if out != "-":
        click.echo(f"{info['hits']:,} hits of {info['motifs']} motifs in {info['records']} sequences "
                   f"({time.perf_counter() - t0:.2f} s) -> {out}", err=True)
