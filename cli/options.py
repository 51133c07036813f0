"""Options shared by several commands."""
from __future__ import annotations

import click


def default_genome() -> str:
    """The bundled genome's path, the default of every ``--genome`` option."""
    from genesae_fast.data import genome_path

    return str(genome_path())


def genome_option(fn):
    """``--genome F``: a FASTA file (plain, gzip or BGZF); the bundled genome by default."""
    return click.option(
        "--genome",
        "genome",
        type=click.Path(dir_okay=False),
        default=default_genome,
        show_default="bundled C. diphtheriae NCTC11397",
        help="FASTA file (plain, gzip or BGZF).",
    )(fn)


def _all_cores() -> int:
    """The cores this process may use (its CPU affinity), imported only when a default is needed."""
    from genesae_fast.threads import usable_cores

    return usable_cores()


def threads_option(fn):
    """``--threads N``: worker threads for native code; all cores by default."""
    return click.option(
        "--threads",
        type=click.IntRange(min=1),
        default=_all_cores,
        show_default="all cores",
        help="Worker threads.",
    )(fn)


def strands_option(default: str, help_text: str):
    """``--strands auto|both|forward``: also run the model on the reverse complement (``genesae_fast.strands``)."""
    return click.option("--strands", type=click.Choice(["auto", "both", "forward"]), default=default,
                        show_default=True, help=help_text)
