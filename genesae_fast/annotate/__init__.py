"""Annotation of SAE features with biology, and the HTML atlas.

>>> from genesae_fast.annotate import annotate, write_report
>>> summary = annotate("store.zarr", "sae/", "ann/")          # features.tsv, feature_motif.tsv ...
>>> write_report("ann/", sae="sae/")                           # ann/report.html

Modules, one job each: ``concepts`` (precision per base, recall per hit, held-out F1, BH),
``genes`` (gene-structure concepts from pyrodigal or GFF3), ``logos`` (feature logos and
TomTom-like matching), ``encode`` (streaming SAE encoding of a store), ``core`` (the
annotation on in-memory inputs), ``folder`` (reading a store, writing the folder),
``report`` (the HTML atlas), ``pipeline`` (``genesae run``); with a reverse-complement
store, ``strands`` (codes pooled over the two passes) and ``strand_scores`` (motifs per strand).
"""
from __future__ import annotations

__all__ = ["annotate", "describe", "write_report", "run_pipeline"]


def __getattr__(name: str):
    # lazy: importing the package must stay cheap (no torch, no pyarrow)
    if name in ("annotate", "describe"):
        from genesae_fast.annotate import folder

        return getattr(folder, name)
    if name == "write_report":
        from genesae_fast.annotate.report import write_report

        return write_report
    if name == "run_pipeline":
        from genesae_fast.pipeline import run_pipeline

        return run_pipeline
    raise AttributeError(f"module 'genesae_fast.annotate' has no attribute {name!r}")
