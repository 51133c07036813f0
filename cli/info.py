"""``genesae info PATH``: describe whatever PATH is."""
from __future__ import annotations

import importlib
import json
from pathlib import Path

import click

from genesae_fast.errors import InputError

# (marker file inside a folder, module with a describe(path) -> dict function)
_FOLDER_KINDS = [
    ("zarr.json", "genesae_fast.store"),
    ("sae.safetensors", "genesae_fast.sae"),
    ("features.tsv", "genesae_fast.annotate"),
    ("lm_config.json", "genesae_fast.models"),
]


def describe_path(path: str) -> dict:
    """Summary dict of a FASTA file, activation store, SAE, LM or annotation folder."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: no such file or folder")
    if p.is_dir():
        for marker, module in _FOLDER_KINDS:
            if (p / marker).exists():
                return importlib.import_module(module).describe(p)
        raise InputError(f"{path}: not a store, SAE, LM or annotation folder")
    from genesae_fast.sequences import read_fasta, summarize

    summary = summarize(read_fasta(p))
    return {"kind": "fasta", "path": str(p), **summary}


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        if len(value) > 12:
            head = ", ".join(f"{k}={_format(v)}" for k, v in list(value.items())[:12])
            return f"{head}, ... ({len(value)} in all)"
        return ", ".join(f"{k}={_format(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)) and len(value) > 12:
        return ", ".join(map(_format, value[:12])) + f", ... ({len(value)} in all)"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(_format, value))
    return str(value)


@click.command()
@click.argument("path", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def info(path: str, as_json: bool) -> None:
    """Describe PATH: a FASTA file (records, lengths, GC, N and soft-masked fractions),
    an activation store, an SAE folder, an LM folder or an annotation folder."""
    summary = describe_path(path)
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    width = max(len(k) for k in summary)
    for key, value in summary.items():
        click.echo(f"{key:<{width}}  {_format(value)}")
