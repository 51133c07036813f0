"""``python -m genesae_fast.planted``: write a planted-motif control genome."""
from __future__ import annotations

import click

from genesae_fast.errors import InputError
from genesae_fast.planted.motif_sets import DEFAULT_PLANTED


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Folder for genome.fa, sites.bed (BED6 with strand), motifs.meme (planted then decoys) "
                   "and planted.json (which motif is which, and these options).")
@click.option("--length", type=click.IntRange(min=1), default=1_000_000, show_default=True,
              help="Bases of the planted genome.")
@click.option("--sites", "n_sites", type=click.IntRange(min=1), default=400, show_default=True,
              help="Sites planted per motif (half on each strand).")
@click.option("--planted", default=",".join(DEFAULT_PLANTED), show_default=True,
              help="Comma-separated TF names or matrix IDs of the motif set to plant.")
@click.option("--decoys", "n_decoys", type=click.IntRange(min=0), default=32, show_default=True,
              help="Unplanted motifs unlike every planted one (similarity < 0.5), written after the planted ones.")
@click.option("--genome", default=None, type=click.Path(dir_okay=False),
              help="Base sequence FASTA (records joined).  [default: the bundled genome]")
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True,
              help="First base of the base sequence taken.")
@click.option("--mutate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Fraction of base-sequence bases replaced by random bases before planting.")
@click.option("--smoothing", type=click.FloatRange(0, 1), default=0.05, show_default=True,
              help="Sites are drawn from (1-s)*matrix + s/4: weak sites, as in real genomes.")
@click.option("--gap", type=click.IntRange(min=0), default=10, show_default=True,
              help="Least bases between two sites.")
@click.option("--motifs", default="jaspar2024:CORE:vertebrates", show_default=True,
              help="Motif SPEC or file the planted motifs and decoys come from.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same files.")
def main(out, length, n_sites, planted, n_decoys, genome, offset, mutate, smoothing, gap, motifs, seed) -> None:
    """Write a planted-motif control: real sequence with JASPAR motif sites sampled from
    their matrices, on random strands, at random non-overlapping places, plus decoy motifs
    that were not planted. Run `genesae run --genome OUT/genome.fa --motifs OUT/motifs.meme`
    on it and compare planted motifs with decoys."""
    from genesae_fast.planted.build import PlantOptions, make_planted_genome, write_planted

    opts = PlantOptions(length=length, n_sites=n_sites, planted=tuple(x.strip() for x in planted.split(",") if x.strip()),
                        n_decoys=n_decoys, seed=seed, genome=genome, offset=offset, mutate=mutate,
                        smoothing=smoothing, gap=gap, motifs=motifs)
    try:
        pg = make_planted_genome(opts)
        paths = write_planted(pg, out, opts)
    except InputError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    click.echo(f"{len(pg.sites)} sites of {len(pg.planted)} motifs in {pg.codes.shape[0]:,} bp, "
               f"{len(pg.decoys)} decoys -> {paths['fasta']}, {paths['bed']}, {paths['meme']}")


if __name__ == "__main__":
    main()
