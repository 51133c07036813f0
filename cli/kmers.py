"""``genesae kmers``: k-mer counts as TSV, written as they are counted, within a memory budget."""
from __future__ import annotations

import click

from genesae_fast.cli.options import genome_option, threads_option


@click.command()
@genome_option
@click.option("-k", "k", type=click.IntRange(1, 31), required=True, help="k-mer length (1-31).")
@click.option("--canonical", is_flag=True, help="Key each k-mer by the smaller of it and its reverse complement.")
@click.option("--min-count", type=click.IntRange(1, 2**64 - 1), default=1, show_default=True,
              help="Omit rarer k-mers.")
@threads_option
@click.option("--memory", default=None, show_default="half the machine's RAM",
              help="Memory budget of the whole command (e.g. 300M, 4G). k-mers that do not fit "
                   "spill to disk in 256 partitions, counted one batch at a time; counts are the same.")
@click.option("--tmp-dir", type=click.Path(file_okay=False), default=None, show_default="system temp folder",
              help="Where spill files go (about 8 bytes per k-mer of the genome when spilling).")
@click.option("--out", "-o", type=click.Path(dir_okay=False), default="-", show_default="stdout",
              help="Output TSV (a FIFO or device is written through).")
def kmers(genome: str, k: int, canonical: bool, min_count: int, threads: int, memory: str | None,
          tmp_dir: str | None, out: str) -> None:
    """Count k-mers of a genome and write `kmer<TAB>count` rows in lexicographic order.

    k-mers that span a non-ACGT base or a record boundary are not counted; lowercase
    (soft-masked) bases count as upper case. Rows are written as each partition is counted.
    """
    from genesae_fast.kmers import default_memory, parse_memory
    from genesae_fast.kmers_file import write_kmers_file
    from genesae_fast.outputs import check_output_path

    budget = parse_memory(memory) if memory is not None else default_memory()
    if out != "-":
        check_output_path(out)  # fail before the work, not after
    # the genome is read in pieces: the budget holds it too, whatever its size
    rows = write_kmers_file(genome, k, out, canonical=canonical, min_count=min_count, threads=threads,
                            memory=budget, spill_dir=tmp_dir)
    if out != "-":
        click.echo(f"{rows:,} distinct {k}-mers written to {out}", err=True)
