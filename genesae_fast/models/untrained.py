"""A randomly initialised built-in LM: the "learned nothing" control.

Same architecture as a trained model folder (the built-in model by default), weights drawn
by the network's own initialisation under a fixed seed, never trained. Whatever SAE features
of its activations match is what a gene LM gives without learning anything: structure of
the input that random convolutions already pass through (base composition, short k-mers).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from genesae_fast.errors import InputError
from genesae_fast.models.builtin import CONFIG_FILE, METRICS_FILE, WEIGHTS_FILE, build_network, read_config


def _source_folder(like: str) -> Path:
    if str(like) == "builtin":
        from genesae_fast.models import builtin_path

        return builtin_path()
    return Path(like)


def untrained_config(like: str = "builtin", seed: int = 0) -> dict:
    """The ``lm_config.json`` of an untrained copy of ``like`` ('builtin' or a model folder)."""
    config = dict(read_config(_source_folder(like)))
    config.pop("training", None)
    config["untrained"] = {"seed": int(seed), "architecture_of": "builtin" if str(like) == "builtin" else
                           Path(like).name}
    return config


def write_untrained(out: str | os.PathLike, *, like: str = "builtin", seed: int = 0) -> Path:
    """Write a randomly initialised model folder into ``out`` (a valid ``--model``); returns it.

    The same ``like`` and ``seed`` give the same weights. ``lm_config.json`` is written last,
    so an interrupted write is no model.
    """
    import torch
    from safetensors.torch import save_file

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    config = untrained_config(like, seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_FILE).unlink(missing_ok=True)
    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(int(seed))
        net = build_network(config)
    finally:
        torch.random.set_rng_state(gen_state)  # leave the caller's random stream as it was
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(out / (WEIGHTS_FILE + ".tmp")))
    os.replace(out / (WEIGHTS_FILE + ".tmp"), out / WEIGHTS_FILE)
    for name, payload in ((METRICS_FILE, {"untrained": True, "seed": int(seed)}), (CONFIG_FILE, config)):
        tmp = out / (name + ".tmp")
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
        os.replace(tmp, out / name)
    return out


__all__ = ["untrained_config", "write_untrained"]
