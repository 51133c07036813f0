"""A deterministic toy causal "gene LM" for planted-motif controls that need no trained LM.

Each layer computes a few channels from the bases and mixes them into ``d_model``
dimensions with its own fixed random rotation (so single neurons are mixtures of channels,
as in a real model, while an SAE can recover the channels):

====== ============================================================ ==================
layer  channels                                                     receptive field
====== ============================================================ ==================
0      one-hot base                                                 1
1      rectified scores of random 3 bp matrices (no motif signal)   3
2      rectified PWM score of each planted motif over the window    W (widest motif)
       *ending* at the base, plus random-matrix distractors
3      layer 2's channels held for ``blur`` more bases (a running   W + blur
       max): the motif signal, but smeared past the site's end
4      rectified scores of random W + blur bp matrices (no motif)   W + blur
====== ============================================================ ==================

Like a causal LM reading the + strand, the motif channels fire at the last base of + strand
sites only. When the widest planted motif is 10-11 bp (``W < 12 <= W + blur``), the
receptive-field rule of ``extract.default_layer`` picks layer 3 while layer 2 is the best:
the situation of the built-in LM in issue 13. Layer 3 still finds the motifs, with lower
precision (it fires ``blur`` bases past each site), so a both-strand pass raises its F1 too.
Channel thresholds are fixed at construction (a quantile of the scores on seeded random
sequence), so a token's activations depend only on the bases before it in its window.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np

from genesae_fast.errors import InputError
from genesae_fast.models.base import GeneModel, TokenizedSequence

N_PENALTY = -2.0  # log-odds of an unknown base or of a position before the window's start


def log_odds_table(probs: np.ndarray) -> np.ndarray:
    """(w, 5) log-odds against a uniform background; column 4 (N, padding) is ``N_PENALTY``."""
    lo = np.log(np.asarray(probs, np.float64) / 0.25 + 1e-3)
    return np.concatenate([lo, np.full((lo.shape[0], 1), N_PENALTY)], axis=1)


def window_end_scores(ids: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Score of the ``w`` bases ending at each token of each window.

    Parameters
    ----------
    ids : (B, W) int -- base codes 0..4 (4 = other)
    table : (w, 5) float -- :func:`log_odds_table`

    Returns
    -------
    (B, W) float64; bases before the window's start count as unknown.
    """
    w = table.shape[0]
    padded = np.pad(np.minimum(ids, 4), ((0, 0), (w - 1, 0)), constant_values=4)
    width = ids.shape[1]
    return sum(table[j, padded[:, j:j + width]] for j in range(w))


def running_max(x: np.ndarray, span: int) -> np.ndarray:
    """Causal running max over the last ``span + 1`` positions of axis 1 of (B, W, C)."""
    out = x.copy()
    for s in range(1, span + 1):
        out[:, s:] = np.maximum(out[:, s:], x[:, :-s])
    return out


class PlantedToyModel(GeneModel):
    """Toy causal gene LM with a motif layer (see the module docstring).

    Parameters
    ----------
    motifs : list of (w, 4) probability matrices (or objects with ``.probs``), the planted motifs
    n_distractors : random-matrix channels beside the motif channels of layers 2-3
    blur : bases layer 3 holds a motif channel after it fired
    d_model : width of every layer (at least the largest channel count)
    seed : seeds the random matrices, the rotations and the thresholds' background
    quantile : a channel is its score minus this quantile of its scores on random sequence, rectified
    """

    n_layers = 4
    default_window = 512
    default_stride = 256
    device = "cpu"

    def __init__(self, motifs: list, *, n_distractors: int = 8, blur: int = 2, d_model: int = 16, seed: int = 0,
                 quantile: float = 0.995):
        rng = np.random.default_rng(seed)
        mats = [np.asarray(getattr(m, "probs", m), np.float64) for m in motifs]
        self.width = max(m.shape[0] for m in mats)
        self.blur = int(blur)

        def rand(n, w):
            return [rng.dirichlet(np.full(4, 0.3), size=w) for _ in range(n)]

        motif_layer = mats + rand(n_distractors, self.width)
        self.tables = {1: [log_odds_table(p) for p in rand(8, 3)], 2: [log_odds_table(p) for p in motif_layer],
                       4: [log_odds_table(p) for p in rand(n_distractors + len(mats), self.width + self.blur)]}
        n_channels = max(4, *(len(t) for t in self.tables.values()))
        if d_model < n_channels:
            raise InputError(f"d_model {d_model}: needs at least {n_channels} (the channels of the widest layer)")
        self.d_model = int(d_model)
        background = rng.integers(0, 4, size=(1, 100_000))
        self.thresholds = {k: np.array([np.quantile(window_end_scores(background, t)[0, t.shape[0] - 1:], quantile)
                                        for t in ts]) for k, ts in self.tables.items()}
        self.rotations = [np.linalg.qr(rng.standard_normal((d_model, d_model)))[0] for _ in range(self.n_layers + 1)]
        self.name = "planted-toy"
        digest = hashlib.sha256(json.dumps({"mats": [m.round(8).tolist() for m in mats], "d": d_model, "seed": seed,
                                            "blur": blur, "nd": n_distractors, "q": quantile}).encode()).hexdigest()
        self.identity = {"name": self.name, "path": "", "sha256": digest}

    def tokenize(self, sequence: str) -> TokenizedSequence:
        """One token per base, ids 0..4 (A, C, G, T, other)."""
        from genesae_fast.models.builtin import tokenize_bases

        return tokenize_bases(sequence)

    def layer_info(self) -> dict:
        """Receptive field in bp of layers 0..4."""
        return {"receptive_field_bp": [1, 3, self.width, self.width + self.blur, self.width + self.blur]}

    def channels(self, token_ids: np.ndarray, layer: int) -> np.ndarray:
        """The unmixed channels of ``layer`` for windows (B, W): (B, W, C) float64."""
        ids = np.asarray(token_ids, np.int64)
        if layer == 0:
            return (ids[:, :, None] == np.arange(4)).astype(np.float64)
        source = 2 if layer == 3 else layer
        scores = np.stack([window_end_scores(ids, t) for t in self.tables[source]], axis=2)
        out = np.maximum(scores - self.thresholds[source], 0.0)
        return running_max(out, self.blur) if layer == 3 else out

    def forward_windows(self, token_ids: np.ndarray, layer: int) -> np.ndarray:
        """Hidden states (B, W, d_model) float32: the channels, zero-padded and rotated."""
        layer = self.check_layer(layer)
        ch = self.channels(token_ids, layer)
        full = np.zeros(ch.shape[:2] + (self.d_model,))
        full[:, :, :ch.shape[2]] = ch
        return np.ascontiguousarray((full @ self.rotations[layer]).astype(np.float32))
