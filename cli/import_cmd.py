"""``genesae import``: a store from activations computed elsewhere."""
from __future__ import annotations

import click


@click.command("import")
@click.argument("array", type=click.Path(dir_okay=False))
@click.option("--out", "-o", "out", required=True, help="Store to write (S.zarr).")
@click.option("--key", default=None, help="Tensor name in a .safetensors file holding several.")
@click.option("--dtype", type=click.Choice(["float16", "bfloat16", "float32"]), default=None,
              help="Stored dtype [the array's; float64 becomes float32].")
@click.option("--codec", type=click.Choice(["none", "lz4", "zstd"]), default="none", show_default=True,
              help="Compression of the activation chunks.")
@click.option("--chunk-rows", type=click.IntRange(min=1), default=None, help="Rows per chunk [about 8 MiB].")
@click.option("--overwrite", is_flag=True, help="Replace an existing store at --out.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def import_cmd(array, out, key, dtype, codec, chunk_rows, overwrite, quiet):
    """Make a store from ARRAY, a 2-D [tokens, d] .npy or .safetensors array.

    The array is streamed chunk by chunk (memory-mapped .npy), so it may be larger than
    memory. The store has no genome coordinates; `genesae train` accepts it.
    """
    from genesae_fast.store import describe, import_array

    import_array(array, out, key=key, dtype=dtype, overwrite=overwrite, progress=not quiet, chunk_rows=chunk_rows,
                 codec=codec)
    info = describe(out)
    click.echo(f"{out}: {info['shape'][0]:,} rows x {info['shape'][1]} ({info['dtype']})", err=True)
