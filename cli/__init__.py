"""The ``genesae`` command line (click).

Subcommands live one per module in this package and are imported only when they run, so
``genesae --help`` stays fast and never imports torch.
"""
from __future__ import annotations

import importlib
import sys

import click

from genesae_fast import __version__
from genesae_fast.errors import InputError

# name -> (module, attribute, one-line help shown by `genesae --help` without importing it)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": ("genesae_fast.cli.run", "run", "Whole pipeline: extract, train, annotate, report."),
    "extract": ("genesae_fast.cli.extract", "extract", "Activations of one model layer into a Zarr store."),
    "import": ("genesae_fast.cli.import_cmd", "import_cmd", "A store from activations made elsewhere (.npy, .safetensors)."),
    "train": ("genesae_fast.cli.train", "train", "Train a TopK sparse autoencoder on a store."),
    "annotate": ("genesae_fast.cli.annotate", "annotate", "Label SAE features with motifs, gene structure, k-mers."),
    "report": ("genesae_fast.cli.report", "report", "Self-contained HTML atlas of an annotation folder."),
    "causal": ("genesae_fast.cli.causal", "causal", "Ablate SAE features in the LM: effect at concept sites vs controls."),
    "export": ("genesae_fast.cli.export", "export", "Write an SAE in SAELens' or sparsify's format."),
    "scan": ("genesae_fast.cli.scan", "scan", "TF motif hits (FIMO-identical) over a genome."),
    "kmers": ("genesae_fast.cli.kmers", "kmers", "Count k-mers (TSV)."),
    "lm": ("genesae_fast.cli.lm", "lm", "The built-in gene language model (lm train, lm init)."),
    "info": ("genesae_fast.cli.info", "info", "Describe a FASTA file, store, SAE, LM or annotation folder."),
    "plant": ("genesae_fast.planted.__main__", "main", "Write a planted-motif control genome (sites, decoys)."),
}


class UserError(click.ClickException):
    """A one-line error for the user: printed without a traceback, exit status 2."""

    exit_code = 2


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_text) for name, (_, _, help_text) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except InputError as exc:
            raise UserError(str(exc)) from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="genesae")
def cli() -> None:
    """genesae: find what a gene (DNA) language model has learned.

    Runs a model over a genome, stores one layer's activations, trains a TopK sparse
    autoencoder on them and annotates every feature with TF motifs, gene structure and
    k-mers. `genesae run` does it all on the bundled genome and built-in model.
    """


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``genesae`` script."""
    cli.main(args=argv, prog_name="genesae")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
