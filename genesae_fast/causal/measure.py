"""The LM's bits at chosen genome intervals with one layer spliced or ablated.

Only short windows are run: a site ``[s, e)`` is scored from the window ``[s - context, e)``
(cut at the start of its record). For the built-in CNN ``context`` is its receptive field,
so every score equals that of one pass over the whole record; models without a finite
receptive field (attention) see ``context`` bases of left context only. Windows of equal
shape go through the model together, so no padding ever changes a result.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

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
    shape = np.stack([sites.end - w0, sites.end - sites.start], axis=1) if n else np.zeros((0, 2), np.int64)
    for key in np.unique(shape, axis=0):
        group = np.flatnonzero((shape == key).all(axis=1))
        for a in range(0, group.shape[0], BATCH):
            rows = group[a:a + BATCH]
            b, c, f = _score_group(model, codes, lookup, w0[rows], int(key[0]), int(key[1]), layer, replace)
            bits[rows], n_bases[rows], fired[rows] = b, c, f
    return Scores(bits, n_bases, fired)


def _score_group(model, codes, lookup, w0, width: int, site_len: int, layer, replace):
    """Bits, scored bases and firing of windows ``[w0, w0 + width)`` whose last ``site_len`` bases are the site."""
    import torch

    win = codes[w0[:, None] + np.arange(width)[None, :]].astype(np.int64)
    logp = model.next_base_logprobs(lookup[win], layer=layer, replace=replace)
    first = width - site_len
    # column t predicts base t + 1: the site's bases are predicted by columns first-1 .. width-2
    cols = np.arange(max(first, 1), width)
    target = torch.as_tensor(np.minimum(win[:, cols], 3), device=logp.device)
    lp = torch.gather(logp[:, cols - 1, :], 2, target[..., None])[..., 0].double().cpu().numpy()
    valid = win[:, cols] < 4
    bits = -(lp * valid).sum(axis=1) / math.log(2)
    fired = np.zeros(w0.shape[0], bool)
    mask = getattr(replace, "fired", None)
    if mask is not None:
        fired = np.asarray(mask)[:, first:].any(axis=1)
    return bits, valid.sum(axis=1), fired
