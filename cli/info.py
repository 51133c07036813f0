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


def describe_path(path: str, verify: bool = False) -> dict:
    """Summary dict of a FASTA file, activation store, SAE, LM or annotation folder.

    ``verify`` re-checks every chunk of an activation store against its commit record
    (InputError listing the bad chunks); it is refused for anything else.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: no such file or folder")
    if p.is_dir():
        for marker, module in _FOLDER_KINDS:
            if (p / marker).exists():
                if module == "genesae_fast.store":
                    return importlib.import_module(module).describe(p, verify=verify)
                if verify:
                    raise InputError(f"{path}: --verify applies to activation stores only")
                return importlib.import_module(module).describe(p)
        raise InputError(f"{path}: not a store, SAE, LM or annotation folder")
    if not p.is_file():  # a FIFO, device or socket: /dev/zero would be read forever
        raise InputError(f"{path}: not a regular file or folder")
    if verify:
        raise InputError(f"{path}: --verify applies to activation stores only")
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
@click.option("--verify", is_flag=True,
              help="Activation stores: re-read every chunk and check it against its commit record's CRC-32 "
                   "(exit status 2 listing the bad chunks).")
def info(path: str, as_json: bool, verify: bool) -> None:
    """Describe PATH: a FASTA file (records, lengths, GC, N and soft-masked fractions),
    an activation store, an SAE folder, an LM folder or an annotation folder.

    Opening a store validates its attributes, statistics and commit records; --verify
    also reads every chunk."""
    summary = describe_path(path, verify=verify)
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    width = max(len(k) for k in summary)
    for key, value in summary.items():
        click.echo(f"{key:<{width}}  {_format(value)}")
