"""``genesae kmers``: k-mer counts as TSV."""
from __future__ import annotations

import click

from genesae_fast.cli.options import genome_option, threads_option


@click.command()
@genome_option
@click.option("-k", "k", type=click.IntRange(1, 31), required=True, help="k-mer length (1-31).")
@click.option("--canonical", is_flag=True, help="Key each k-mer by the smaller of it and its reverse complement.")
@click.option("--min-count", type=click.IntRange(min=1), default=1, show_default=True, help="Omit rarer k-mers.")
@threads_option
@click.option("--out", "-o", type=click.Path(dir_okay=False), default="-", show_default="stdout", help="Output TSV.")
def kmers(genome: str, k: int, canonical: bool, min_count: int, threads: int, out: str) -> None:
    """Count k-mers of a genome and write `kmer<TAB>count` rows in lexicographic order.

    k-mers that span a non-ACGT base or a record boundary are not counted; lowercase
    (soft-masked) bases count as upper case.
    """
    from genesae_fast.kmers import count_kmers, write_tsv
    from genesae_fast.sequences import read_fasta

    records = read_fasta(genome)
    packed, counts = count_kmers(records, k, canonical=canonical, min_count=min_count, threads=threads)
    write_tsv(packed, counts, k, out)
    if out != "-":
        click.echo(f"{len(packed):,} distinct {k}-mers written to {out}", err=True)
