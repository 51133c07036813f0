"""Read SAEs saved by other libraries, and write ours in their formats.

>>> from genesae_fast.sae_formats import load_any, check_compatible
>>> sae = load_any("path/to/sae", device="cpu")   # ours, SAELens, sparsify or dictionary_learning
>>> check_compatible(sae, store)                    # InputError if d_in != store.d
>>> vals, idx = sae.encode(sae.normalize(x))       # [b, k'], int64 [b, k']; value <= 0: not firing

The format is detected from the folder's files:

=====================  ===========================================  ==========================
format                 files                                        module
=====================  ===========================================  ==========================
ours (TopKSAE.save)    ``config.json`` + ``sae.safetensors``        :mod:`genesae_fast.sae`
SAELens 6              ``cfg.json`` + ``sae_weights.safetensors``   :mod:`.saelens`
sparsify               ``cfg.json`` + ``sae.safetensors`` (or a     :mod:`.sparsify`
                       parent with exactly one such folder)
dictionary_learning    ``ae.pt`` + ``config.json``                  :mod:`.dictionary_learning`
=====================  ===========================================  ==========================
"""
from __future__ import annotations

from pathlib import Path

from genesae_fast.errors import InputError

__all__ = ["load_any", "detect_format", "check_compatible", "FORMATS"]

FORMATS = ("genesae", "saelens", "sparsify", "dictionary_learning")


def detect_format(path) -> tuple[str, Path]:
    """``(format, folder)`` of an SAE folder; ``folder`` is the hookpoint folder for sparsify.

    Raises ``InputError`` naming the files found when no format matches.
    """
    from genesae_fast.sae_formats import dictionary_learning, saelens, sparsify

    folder = Path(path)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder (an SAE is a folder of weights and a config)")
    if (folder / "config.json").is_file() and (folder / "sae.safetensors").is_file():
        return "genesae", folder
    if saelens.is_saelens(folder):
        return "saelens", folder
    if sparsify.is_sparsify(folder):
        return "sparsify", folder
    if dictionary_learning.is_dictionary_learning(folder):
        return "dictionary_learning", folder
    hooks = sparsify.hookpoint_folders(folder)
    if len(hooks) == 1:
        return "sparsify", hooks[0]
    if len(hooks) > 1:
        names = ", ".join(h.name for h in hooks[:5])
        raise InputError(f"{folder}: holds {len(hooks)} sparsify hookpoint folders ({names}); pass one of them")
    found = ", ".join(sorted(p.name for p in folder.iterdir())[:8]) or "nothing"
    raise InputError(f"{folder}: not an SAE folder of a known format (found {found}; expected config.json + "
                     "sae.safetensors, cfg.json + sae_weights.safetensors, cfg.json + sae.safetensors or ae.pt + config.json)")


def load_any(path, device="cpu"):
    """Load an SAE folder of any supported format (a drop-in for ``TopKSAE.load(path, device=...)``).

    Parameters
    ----------
    path : SAE folder (see the module docstring for the formats)
    device : torch device for the weights

    Returns
    -------
    TopKSAE for our own folders, else :class:`~genesae_fast.sae_formats.generic.ForeignSAE`;
    both have ``normalize``, ``encode`` -> ``(vals [b, k'], idx int64 [b, k'])``, ``decode``,
    ``denormalize``, ``config["n_latents"]``, ``config["d_in"]`` and ``parameters()``.
    The module is in eval mode.
    """
    fmt, folder = detect_format(path)
    device = device or "cpu"  # TopKSAE.load's default spelling (device=None) works too
    if fmt == "genesae":
        from genesae_fast.sae import TopKSAE

        sae = TopKSAE.load(folder, device=device)
    elif fmt == "saelens":
        from genesae_fast.sae_formats.saelens import load_saelens

        sae = load_saelens(folder, device=device)
    elif fmt == "sparsify":
        from genesae_fast.sae_formats.sparsify import load_sparsify

        sae = load_sparsify(folder, device=device)
    else:
        from genesae_fast.sae_formats.dictionary_learning import load_dictionary_learning

        sae = load_dictionary_learning(folder, device=device)
    sae.eval()
    sae.source_format, sae.source_path = fmt, str(folder.resolve())  # not in config: TopKSAE.save writes that
    return sae


def check_compatible(sae, store) -> None:
    """``InputError`` (one line, naming both) if the SAE's input width is not the store's ``d``."""
    d_in = int(sae.config["d_in"])
    if d_in != int(store.d):
        where = getattr(sae, "source_path", None) or sae.config.get("path") or "the SAE"
        raise InputError(f"{where}: SAE input width d_in={d_in} does not match the store {getattr(store, 'path', '')} "
                         f"with d={store.d}")
