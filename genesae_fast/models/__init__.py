"""Gene language models behind one interface.

>>> from genesae_fast.models import load_model
>>> m = load_model("builtin")                  # or a folder: `genesae lm train` / local HF
>>> toks = m.tokenize("ACGTNNacgt")            # token_ids, bp_start, bp_end (int64 [T])
>>> for block in m.extract("ACGT" * 1000, layer=2):
...     block.activations                      # float32 [t, m.d_model]

``load_model(spec)``: ``"builtin"`` (weights shipped in the package), a folder written by
``genesae lm train`` (it holds ``lm_config.json``) or a local Hugging Face checkpoint
(loaded offline; remote code only with ``trust_remote_code=True``).
"""
from __future__ import annotations

import json
from pathlib import Path

from genesae_fast.errors import InputError
from genesae_fast.models.base import ActivationBlock, GeneModel, TokenizedSequence

__all__ = [
    "ActivationBlock",
    "GeneModel",
    "TokenizedSequence",
    "builtin_path",
    "describe",
    "load_model",
]


def builtin_path() -> Path:
    """Folder of the built-in model's weights shipped in the package."""
    from genesae_fast.data import data_dir

    return data_dir() / "builtin_lm"


def load_model(spec: str = "builtin", device=None, trust_remote_code: bool = False) -> GeneModel:
    """Load a gene LM.

    Parameters
    ----------
    spec : str
        ``"builtin"``, a ``genesae lm train`` folder, or a local Hugging Face checkpoint
        folder (``config.json`` + weights + tokenizer files).
    device : str or torch.device, optional
        Default: cuda when available, else cpu.
    trust_remote_code : bool
        Allow a Hugging Face checkpoint's own Python code (never downloaded).

    Raises
    ------
    InputError
        One line naming ``spec`` and the problem.
    """
    from genesae_fast.models.builtin import CONFIG_FILE, CharCNNModel

    spec = str(spec)
    if spec == "builtin":
        folder = builtin_path()
        if not (folder / CONFIG_FILE).is_file():
            raise InputError(f"--model builtin: the shipped weights are missing from {folder}")
        return CharCNNModel(folder, device=device, name="builtin")
    path = Path(spec).expanduser()
    if not path.exists():
        raise InputError(f"--model {spec}: no such folder (use 'builtin' or a local model folder)")
    if not path.is_dir():
        raise InputError(f"--model {spec}: not a folder (use 'builtin' or a local model folder)")
    if (path / CONFIG_FILE).is_file():
        return CharCNNModel(path, device=device)
    if (path / "config.json").is_file():
        from genesae_fast.models.hf import HFModel

        return HFModel(path, device=device, trust_remote_code=trust_remote_code)
    raise InputError(
        f"--model {spec}: not a model folder (no {CONFIG_FILE} from `genesae lm train`, "
        "no config.json of a Hugging Face checkpoint)"
    )


def describe(path) -> dict:
    """Summary of a ``genesae lm train`` folder for ``genesae info``.

    Reads only the JSON files and hashes the weights; does not build the network.
    """
    from genesae_fast.models.builtin import METRICS_FILE, WEIGHTS_FILE, read_config
    from genesae_fast.sequences import file_sha256

    path = Path(path)
    config = read_config(path)
    weights = path / config.get("weights", WEIGHTS_FILE)
    out = {
        "kind": "gene language model (genesae lm train)",
        "path": str(path.resolve()),
        "architecture": config["architecture"],
        "d_model": config["d_model"],
        "n_layers": config["n_layers"],
        "receptive_field_bp": config.get("receptive_field_bp", []),
        "context": config.get("context"),
        "default_window": config.get("default_window"),
        "default_stride": config.get("default_stride"),
        "weights": weights.name,
        "weights_sha256": file_sha256(weights) if weights.is_file() else "missing",
    }
    if "n_parameters" in config:
        out["n_parameters"] = config["n_parameters"]
    metrics_file = path / METRICS_FILE
    if metrics_file.is_file():
        try:
            metrics = json.loads(metrics_file.read_text())
        except ValueError:
            metrics = {}
        for key in ("heldout_bits_per_bp", "markov_bits_per_bp", "markov_order", "test_bits_per_bp",
                    "markov_test_bits_per_bp", "train_seconds", "steps", "best_step", "stop_reason", "genome",
                    "genome_sha256", "untrained"):
            if key in metrics:
                out[key] = metrics[key]
    return out
