"""``genesae extract``: one model layer's activations over a genome into a Zarr store."""
from __future__ import annotations

import click

from genesae_fast.cli.options import genome_option, strands_option


@click.command()
@genome_option
@click.option("--model", "model", default="builtin", show_default=True,
              help="'builtin', a `genesae lm train` folder or a local Hugging Face checkpoint.")
@click.option("--layer", type=click.IntRange(min=0), default=None,
              help="0 = embeddings, i = output of block i. Default: the first block whose receptive field "
                   "reaches a TF motif's width (12 bp) when the model reports receptive fields, else the middle block.")
@click.option("--out", "-o", "out", required=True, help="Store to write (S.zarr: a folder or an fsspec URL).")
@click.option("--window", type=click.IntRange(min=1), default=None, help="Window in tokens [model default].")
@click.option("--stride", type=click.IntRange(min=1), default=None, help="Step between windows in tokens [model default].")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None, help="Stop after this many tokens.")
@click.option("--dtype", type=click.Choice(["float16", "bfloat16", "float32"]), default="float16", show_default=True,
              help="Stored activation dtype.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True, help="Windows per forward pass.")
@click.option("--codec", type=click.Choice(["none", "lz4", "zstd"]), default="none", show_default=True,
              help="Compression of the activation chunks.")
@click.option("--chunk-rows", type=click.IntRange(min=1), default=None,
              help="Rows per chunk [about 8 MiB of activations].")
@click.option("--device", default=None, help="torch device [cuda if available, else cpu].")
@click.option("--workers", type=click.IntRange(min=1), default=None, show_default="all cores",
              help="Local worker processes on CPU, one torch thread each (fewer for a small genome; 1 on a GPU "
                   "and under torchrun). The store is byte-identical for any number.")
@click.option("--lm-bits", type=click.Choice(["no", "yes", "auto"]), default="no", show_default=True,
              help="Also store the LM's bits per token (-log2 P(token | tokens before it)), which `annotate` "
                   "turns into the 'LM knows this concept' columns; auto: when the model has a next-token head "
                   "(the built-in model and causal-LM Hugging Face checkpoints have one).")
@click.option("--overwrite", is_flag=True, help="Replace an existing store at --out.")
@click.option("--trust-remote-code", is_flag=True, help="Allow a Hugging Face checkpoint's own Python code.")
@strands_option("forward", "both: also run the model on the reverse complement of every record into the sibling "
                           "store S.rc.zarr (+ strand coordinates; S.zarr is the same as with forward); auto: both "
                           "for a model that reads one direction (the built-in one, causal LMs).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def extract(genome, model, layer, out, window, stride, max_tokens, dtype, batch_size, codec, chunk_rows, device,
            workers, lm_bits, overwrite, trust_remote_code, strands, quiet):
    """Run MODEL over GENOME and store the activations of LAYER for every token.

    Resumable: after an interruption (even kill -9) rerun the same command; it continues
    from the last committed chunk and ends with the same bytes as an uninterrupted run.
    A different model, layer, genome or setting for an existing store is refused unless
    --overwrite. On CPU, --workers local processes (all cores by default) share the
    chunks; under torchrun every rank computes its share. The result does not depend on
    either number.
    """
    from genesae_fast.extract import extract_to_store
    from genesae_fast.store import describe

    extract_to_store(genome, model, layer, out, window=window, stride=stride, max_tokens=max_tokens, dtype=dtype,
                     batch_size=batch_size, overwrite=overwrite, progress=not quiet, chunk_rows=chunk_rows,
                     codec=codec, trust_remote_code=trust_remote_code, device=device, workers=workers,
                     lm_bits={"no": False, "yes": True, "auto": "auto"}[lm_bits],
                     strands=strands)
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        info = describe(out)
        click.echo(f"{out}: {info['shape'][0]:,} tokens x {info['shape'][1]} ({info['dtype']}), "
                   f"layer {info.get('layer')}, norm scale {info.get('norm_scale', 0):.4g}", err=True)
