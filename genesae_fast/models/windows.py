"""Windows over a long token sequence, and which window owns each token.

A record of T tokens is cut into windows of ``window`` tokens that start every ``stride``
tokens; the last window is moved left so it ends exactly at T (so every window has the
same length and batches need no padding). Windows overlap by ``window - stride`` tokens.
Each token is *owned* by the window in which it sits furthest from an edge: a token's
distance to the nearer edge of window j is ``(window-1)/2 - |i - c_j|`` with ``c_j`` the
window's centre, so the owner is the window whose centre is nearest, ties going to the
earlier window. Owned ranges are therefore contiguous and split each overlap in the
middle: every token gets at least ``(window - stride) // 2`` tokens of context on both
sides (except at the ends of the record), and is counted exactly once.
"""
from __future__ import annotations

import numpy as np

from genesae_fast.errors import InputError


def check_window(window: int, stride: int) -> None:
    """Raise InputError unless ``1 <= stride <= window``."""
    if int(window) < 1:
        raise InputError(f"--window {window}: must be at least 1 token")
    if not 1 <= int(stride) <= int(window):
        raise InputError(f"--stride {stride}: must be between 1 and the window ({window})")


def window_starts(n_tokens: int, window: int, stride: int) -> np.ndarray:
    """First token of every window.

    Parameters
    ----------
    n_tokens : int
        T, tokens in the record.
    window, stride : int
        Window length and step in tokens (``1 <= stride <= window``).

    Returns
    -------
    numpy.ndarray, shape (n_windows,), int64
        Strictly increasing starts; ``[0]`` when ``T <= window``; empty when T == 0.
        Every window is ``min(window, T)`` tokens long.
    """
    check_window(window, stride)
    if n_tokens <= 0:
        return np.zeros(0, dtype=np.int64)
    if n_tokens <= window:
        return np.zeros(1, dtype=np.int64)
    last = n_tokens - window
    starts = np.arange(0, last, stride, dtype=np.int64)
    return np.append(starts, np.int64(last))


def owned_ranges(n_tokens: int, window: int, stride: int) -> np.ndarray:
    """Half-open token range ``[lo, hi)`` that each window contributes.

    Returns
    -------
    numpy.ndarray, shape (n_windows, 2), int64
        Consecutive, non-empty ranges that tile ``[0, T)``.
    """
    starts = window_starts(n_tokens, window, stride)
    n = len(starts)
    bounds = np.empty(n + 1, dtype=np.int64)
    if n == 0:
        return np.zeros((0, 2), dtype=np.int64)
    bounds[0] = 0
    bounds[-1] = n_tokens
    w = min(window, n_tokens)
    # token i stays in window j while 2i <= s_j + s_{j+1} + w - 1 (nearest centre, ties earlier)
    bounds[1:-1] = (starts[:-1] + starts[1:] + w - 1) // 2 + 1
    return np.stack([bounds[:-1], bounds[1:]], axis=1)


def owner_reference(n_tokens: int, window: int, stride: int) -> np.ndarray:
    """Owning window of every token by brute force (the definition; used by tests).

    Returns
    -------
    numpy.ndarray, shape (T,), int64
        For each token, the window where ``min(i - s, s + w - 1 - i)`` is largest, ties to
        the earliest window.
    """
    starts = window_starts(n_tokens, window, stride)
    w = min(window, n_tokens)
    owner = np.full(n_tokens, -1, dtype=np.int64)
    best = np.full(n_tokens, -1, dtype=np.int64)
    for j, s in enumerate(starts):
        idx = np.arange(s, s + w)
        dist = np.minimum(idx - s, s + w - 1 - idx)
        better = dist > best[idx]
        owner[idx[better]] = j
        best[idx[better]] = dist[better]
    return owner
