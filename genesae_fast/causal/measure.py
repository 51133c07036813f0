"""The LM's bits at chosen genome intervals with one layer spliced or ablated.

Only short windows are run: a site ``[s, e)`` is scored from the window ``[s - context, e)``
(cut at the start of its record). For the built-in CNN ``context`` is its receptive field,
so every score equals that of one pass over the whole record; models without a finite
receptive field (attention) see ``context`` bases of left context only (fewer where the
model's ``max_window`` is shorter; a site longer than it is an InputError). Windows with the same
left context go through the model together, padded on the right (a causal model's column t
never reads a later base, so padding changes no score).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from genesae_fast.errors import InputError

# left context given to models whose predictions depend on the whole window (HF models)
DEFAULT_CONTEXT = 256
# windows per forward pass
BATCH = 128


@dataclass
class Splice:
    """``replace(h)`` for ``next_base_logprobs``: ``h`` -> its SAE reconstruction, minus the
    decoder contribution of the ``ablate`` features wherever they fire.

    ``fired`` is set at each call: ``[B, L]`` bool, where any ablated feature fired
    (all False when nothing is ablated).
    """

    sae: object
    ablate: tuple = ()
    fired: object = field(default=None, repr=False)

    def __call__(self, h):
        import torch

        dev = self.sae.W_enc.device
        with torch.no_grad():
            flat = h.reshape(-1, h.shape[-1]).to(dev)
            vals, idx = self.sae.encode(self.sae.normalize(flat))
            hit = (vals > 0) & _isin(idx, self.ablate)
            vals = torch.where(hit, torch.zeros_like(vals), vals)
            out = self.sae.denormalize(self.sae.decode(vals, idx))
        self.fired = hit.any(dim=1).reshape(h.shape[:-1]).cpu().numpy()
        return out.to(device=h.device, dtype=h.dtype).reshape(h.shape)


def _isin(idx, features):
    import torch

    if not features:
        return torch.zeros_like(idx, dtype=torch.bool)
    return torch.isin(idx, torch.as_tensor(list(features), dtype=idx.dtype, device=idx.device))


@dataclass
class SiteSet:
    """Intervals to score, in global coordinates of ``codes`` (records laid end to end).

    Attributes
    ----------
    start, end : numpy.ndarray, shape (n,), int64 -- half-open
    record_start : numpy.ndarray, shape (n,), int64 -- first base of each interval's record
    """

    start: np.ndarray
    end: np.ndarray
    record_start: np.ndarray

    def __len__(self) -> int:
        return int(self.start.shape[0])


@dataclass
class Scores:
    """Per interval: bits of its scored bases, their number, and whether the ablated
    features fired on one of its bases. Each array has shape (n,)."""

    bits: np.ndarray
    n_bases: np.ndarray
    fired: np.ndarray


def context_of(model) -> int:
    """Left context in bases given to each site: the model's receptive field, else DEFAULT_CONTEXT."""
    ctx = getattr(model, "context_bp", None)
    return int(ctx) if ctx else DEFAULT_CONTEXT


def token_lookup(model) -> np.ndarray:
    """Base code (0..4: A, C, G, T, other) -> the model's token id, shape (5,)."""
    ids = np.asarray(model.tokenize("ACGTN").token_ids, dtype=np.int64)
    if ids.shape != (5,):
        raise ValueError(f"{model.name}: not one token per base; next-base scores need a character-level model")
    return ids


def score_sites(model, codes: np.ndarray, sites: SiteSet, *, layer: int | None = None, replace=None,
                context: int | None = None) -> Scores:
    """Bits the model spends on every A/C/G/T base of each site (a record's first base is not scored).

    Parameters
    ----------
    model : object with ``next_base_logprobs(ids [B, W], layer, replace) -> [B, W, 4]`` and ``tokenize``
    codes : numpy.ndarray, shape (G,), uint8 -- base codes of the genome (records laid end to end)
    sites : SiteSet
    layer, replace : the patch (None: the clean model); ``replace`` may be a :class:`Splice`
    context : left context in bases (default :func:`context_of`)

    Returns
    -------
    Scores
    """
    ctx = context_of(model) if context is None else int(context)
    lookup = token_lookup(model)
    n = len(sites)
    bits = np.zeros(n, np.float64)
    n_bases = np.zeros(n, np.int64)
    fired = np.zeros(n, bool)
    w0 = np.maximum(sites.record_start, sites.start - ctx)
    limit = getattr(model, "max_window", None)
    if limit is not None and n:
        if int((sites.end - sites.start).max()) > limit:
            raise InputError(f"{model.name}: a site of {int((sites.end - sites.start).max())} bases is longer than "
                             f"the model's window ({limit} tokens)")
        w0 = np.maximum(w0, sites.end - limit)  # less left context where the window would be too long
    lead = sites.start - w0
    for key in np.unique(lead):
        # equal left context, so every window's site starts at the same column; windows are
        # padded on the right only, which a causal model never reads back; similar lengths together
        group = np.flatnonzero(lead == key)
        group = group[np.argsort(sites.end[group] - sites.start[group], kind="stable")]
        for a in range(0, group.shape[0], BATCH):
            rows = group[a:a + BATCH]
            b, c, f = _score_batch(model, codes, lookup, w0[rows], sites.end[rows] - w0[rows], int(key), layer, replace)
            bits[rows], n_bases[rows], fired[rows] = b, c, f
    return Scores(bits, n_bases, fired)


def _score_batch(model, codes, lookup, w0, width, lead: int, layer, replace):
    """Bits, scored bases and firing of windows ``[w0, w0 + width)`` whose bases from column
    ``lead`` on are the site (right-padded with N to the longest)."""
    import torch

    cols = np.arange(int(width.max()))
    inside = cols[None, :] < width[:, None]
    win = np.where(inside, codes[np.minimum(w0[:, None] + cols[None, :], codes.shape[0] - 1)], 4).astype(np.int64)
    logp = model.next_base_logprobs(lookup[win], layer=layer, replace=replace)
    # column t predicts base t + 1; site bases are columns >= lead (and >= 1: a record's first base has no context)
    target = torch.as_tensor(np.minimum(win[:, 1:], 3), device=logp.device)
    lp = torch.gather(logp[:, :-1, :], 2, target[..., None])[..., 0].double().cpu().numpy()
    scored = inside[:, 1:] & (win[:, 1:] < 4) & (cols[None, 1:] >= lead)
    bits = -(lp * scored).sum(axis=1) / math.log(2)
    fired = np.zeros(w0.shape[0], bool)
    mask = getattr(replace, "fired", None)
    if mask is not None:
        fired = (np.asarray(mask) & inside & (cols[None, :] >= lead)).any(axis=1)
    return bits, scored.sum(axis=1), fired
