"""Activation store: one model layer's activations of a genome in a Zarr v3 group.

``ActivationStore.open(path)`` reads (training batches, coordinates, intervals);
``StoreWriter`` writes crash-safely, chunk by chunk; ``describe(path)`` summarises a store
for ``genesae info``. Extraction is ``genesae_fast.extract``; ``import_array`` makes a store
from a .npy or .safetensors array. Layout and design: DESIGN.md and
notes/activation-store.md.
"""
from __future__ import annotations

from genesae_fast.store.layout import default_chunk_rows
from genesae_fast.store.reader import ActivationStore, describe
from genesae_fast.store.writer import StoreWriter, config_hash


def import_array(path, out, key=None, dtype=None, overwrite=False, progress=False, chunk_rows=None, codec="none"):
    """A store from an activation array made elsewhere (see ``genesae_fast.store.importer``)."""
    from genesae_fast.store.importer import import_array as _impl

    return _impl(path, out, key=key, dtype=dtype, overwrite=overwrite, progress=progress, chunk_rows=chunk_rows,
                 codec=codec)


__all__ = ["ActivationStore", "StoreWriter", "describe", "import_array", "config_hash", "default_chunk_rows"]
