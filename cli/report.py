"""``genesae report``: the annotation folder as one self-contained HTML file."""
from __future__ import annotations

import click


@click.command()
@click.argument("ann", type=click.Path(file_okay=False))
@click.option("--out", "-o", type=click.Path(dir_okay=False), default=None, help="HTML file.  [default: ANN/report.html]")
@click.option("--sae", type=click.Path(file_okay=False), default=None,
              help="SAE folder for the training curves.  [default: the one recorded in ANN]")
def report(ann, out, sae):
    """Write the HTML atlas of annotation folder ANN: a sortable, searchable feature table,
    per-feature cards (logo beside the matched motif's logo, activation histogram, top
    examples with the active bases highlighted) and summary plots. No server or network
    is needed to view it: styles, script and figures are inline."""
    from genesae_fast.annotate.report import write_report

    path = write_report(ann, out, sae)
    click.echo(str(path))
