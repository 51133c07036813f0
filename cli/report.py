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
    per-feature cards (SVG logo beside the matched motif's logo, activation histogram, a
    genome-browser view (igv.js) of the activation around the top examples beside gene
    calls and motif hits, top examples with the active bases highlighted) and summary
    plots. Motifs that are not significant (q >= 0.05) show as "none". REPORT#feature-12
    opens feature 12's card. No server or network is needed to view it: styles, scripts
    and figures are inline."""
    from genesae_fast.annotate.report import write_report

    path = write_report(ann, out, sae)
    click.echo(str(path))
