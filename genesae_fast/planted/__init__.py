"""Planted-motif controls: genomes where the right answer is known.

>>> from genesae_fast.planted import PlantOptions, make_planted_genome, write_planted
>>> opts = PlantOptions(length=150_000, n_sites=60, seed=1)
>>> pg = make_planted_genome(opts)        # codes, sites (start, end, motif, strand), planted, decoys
>>> write_planted(pg, "planted_dir", opts)  # genome.fa, sites.bed, motifs.meme, planted.json

``python -m genesae_fast.planted --help`` does the same from the command line.
:class:`genesae_fast.planted.toy.PlantedToyModel` is a deterministic causal "gene LM" whose
motif layer scores the planted motifs, for end-to-end controls that need no trained LM.
"""
from __future__ import annotations

from genesae_fast.planted.build import (
    FILES,
    PlantOptions,
    make_planted_genome,
    read_manifest,
    read_sites_bed,
    write_planted,
)
from genesae_fast.planted.genome import PlantedGenome, PlantedSites
from genesae_fast.planted.motif_sets import DEFAULT_PLANTED, choose_decoys, choose_planted, similarity

__all__ = ["DEFAULT_PLANTED", "FILES", "PlantOptions", "PlantedGenome", "PlantedSites", "choose_decoys",
           "choose_planted", "make_planted_genome", "read_manifest", "read_sites_bed", "similarity",
           "write_planted"]
