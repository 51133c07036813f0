"""``genesae export``: write one of our SAE folders in SAELens' or sparsify's format."""
from __future__ import annotations

import click


@click.command()
@click.argument("sae_dir", type=click.Path(file_okay=False))
@click.option("--to", "to", type=click.Choice(["saelens", "sparsify"]), required=True,
              help="Target library: saelens (cfg.json + sae_weights.safetensors, TopK architecture) or "
                   "sparsify (cfg.json + sae.safetensors, one hookpoint folder).")
@click.option("--out", "-o", type=click.Path(), required=True, help="Folder to write (must not exist or be empty).")
def export(sae_dir, to, out):
    """Write the SAE in SAE_DIR (a `genesae train` folder) so that SAELens
    (`SAE.load_from_disk(OUT)`) or sparsify (`SparseCoder.load_from_disk(OUT)`) loads it
    unchanged. Our input normalisation (store mean and norm scale) is folded into the
    weights, so the exported SAE takes raw layer activations and gives the same codes
    and reconstruction as ours."""
    from genesae_fast.sae_formats.export import export_sae

    click.echo(str(export_sae(sae_dir, to, out)))
