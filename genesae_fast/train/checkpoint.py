"""Trainer state on disk: checkpoints, the resume check and the metrics log.

The SAE folder holds, while training, ``trainer_state.pt`` (weights, optimiser, schedule,
dead-latent counters, data position) and ``metrics.jsonl``; ``sae.safetensors`` appears
only when the run has finished (it is moved into place last), so a folder with it is a
finished SAE and a folder without it is a run to resume.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from genesae_fast.errors import InputError

STATE_FILE = "trainer_state.pt"
METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval.json"
STATE_VERSION = 1

# Arguments that decide the trained weights: a resume must match them all.
RESUME_KEYS = (
    "store_config", "store_rows", "d_in", "n_latents", "k", "batch_size", "world_size", "total_steps",
    "lr", "seed", "batch_topk", "k_aux", "aux_coef", "dead_tokens", "warmup_steps", "decay_steps",
    "train_chunks", "heldout_chunks",
)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (never half-written)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_state(out_dir: Path, state: dict) -> None:
    """Save a checkpoint atomically to ``out_dir/trainer_state.pt``."""
    import torch

    tmp = out_dir / (STATE_FILE + ".tmp")
    torch.save(dict(state, version=STATE_VERSION), tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, out_dir / STATE_FILE)


def load_state(out_dir: Path) -> dict | None:
    """The checkpoint in ``out_dir``, or None when there is none.

    Raises
    ------
    InputError
        The file exists but cannot be read (damaged, or from another version).
    """
    import torch

    path = out_dir / STATE_FILE
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a damaged file
        raise InputError(f"{path}: cannot read the trainer checkpoint ({exc.__class__.__name__}); "
                         "use --overwrite to start again") from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise InputError(f"{path}: not a trainer checkpoint of this version; use --overwrite to start again")
    return state


def differences(old: dict, new: dict) -> str:
    """``key old -> new`` for the resume keys that differ (at most six), '' when none."""
    diffs = [f"{key} {old.get(key)!r} -> {new.get(key)!r}" for key in RESUME_KEYS if old.get(key) != new.get(key)]
    return "; ".join(diffs[:6])


def check_resume(out_dir: Path, saved: dict, current: dict) -> None:
    """Refuse to resume a checkpoint made with other settings (one-line InputError)."""
    diff = differences(saved, current)
    if diff:
        raise InputError(f"{out_dir}: holds a training run with other settings ({diff}); "
                         "rerun with the same options, or use --overwrite or another --out")


class MetricsLog:
    """Appends one JSON object a line to ``metrics.jsonl``; truncates to a checkpoint on resume."""

    def __init__(self, path: Path, enabled: bool = True):
        self.path = path
        self.enabled = enabled

    def size(self) -> int:
        """Current length in bytes (stored in checkpoints)."""
        return self.path.stat().st_size if self.path.exists() else 0

    def truncate(self, size: int) -> None:
        """Drop lines written after the checkpoint being resumed."""
        if self.enabled and self.path.exists() and self.path.stat().st_size > size:
            with open(self.path, "r+b") as fh:
                fh.truncate(size)

    def reset(self) -> None:
        """Start an empty log (a fresh run)."""
        if self.enabled and self.path.exists():
            self.path.unlink()

    def append(self, record: dict) -> None:
        """Append one record as a JSON line."""
        if not self.enabled:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record, separators=(",", ":")) + "\n")


__all__ = ["STATE_FILE", "METRICS_FILE", "EVAL_FILE", "RESUME_KEYS", "MetricsLog", "atomic_write_bytes",
           "check_resume", "differences", "load_state", "save_state"]
