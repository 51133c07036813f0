"""The one interface every gene language model implements (``GeneModel``).

A model turns a DNA string into tokens with + strand bp coordinates, and returns the
hidden states of one layer for windows of tokens. ``GeneModel.extract`` does the rest
once for all models: windows with overlap, ownership of each token by the window where
it sits furthest from an edge (see ``windows``), and forward batches on a fixed grid.
"""
from __future__ import annotations

import abc
import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

from genesae_fast.errors import InputError
from genesae_fast.models.windows import check_window, owned_ranges, window_starts


@dataclass
class TokenizedSequence:
    """Tokens of one sequence with their bp coordinates.

    Attributes
    ----------
    token_ids : numpy.ndarray, shape (T,), int64
    bp_start, bp_end : numpy.ndarray, shape (T,), int64
        0-based half-open coordinates on the + strand of the tokenized string.
    """

    token_ids: np.ndarray
    bp_start: np.ndarray
    bp_end: np.ndarray

    def __len__(self) -> int:
        return int(self.token_ids.shape[0])

    def slice(self, lo: int, hi: int) -> "TokenizedSequence":
        """Tokens ``lo..hi-1``."""
        return TokenizedSequence(self.token_ids[lo:hi], self.bp_start[lo:hi], self.bp_end[lo:hi])


@dataclass
class ActivationBlock:
    """Activations of consecutive tokens.

    Attributes
    ----------
    token_ids, bp_start, bp_end : numpy.ndarray, shape (t,), int64
    activations : numpy.ndarray, shape (t, d_model), float32
    lm_bits : numpy.ndarray, shape (t,), float32, or None
        Bits the model spent predicting each token from the tokens before it (NaN where
        it made no prediction); only when asked for (``GeneModel.extract(lm_bits=True)``).
    """

    token_ids: np.ndarray
    bp_start: np.ndarray
    bp_end: np.ndarray
    activations: np.ndarray
    lm_bits: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.token_ids.shape[0])


def resolve_device(device=None):
    """``torch.device``: the one given, else cuda when available, else cpu."""
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class _StopForward(Exception):
    """Raised by a hook once the wanted layer is captured, to skip the later layers."""


def _hook_layer(blocks: Sequence, layer: int, captured: list, stop: bool):
    """Hook that appends the hidden states of ``layer`` to ``captured`` (and raises
    ``_StopForward`` when ``stop``); returns the hook's handle."""

    def first(tensor_like):
        while isinstance(tensor_like, (tuple, list)):
            tensor_like = tensor_like[0]
        return tensor_like

    def pre_hook(module, args, kwargs):
        if args:
            captured.append(first(args[0]))
        else:
            captured.append(first(kwargs.get("hidden_states", next(iter(kwargs.values())))))
        if stop:
            raise _StopForward

    def post_hook(module, args, output):
        captured.append(first(output))
        if stop:
            raise _StopForward

    if layer == 0:
        return blocks[0].register_forward_pre_hook(pre_hook, with_kwargs=True)
    return blocks[layer - 1].register_forward_hook(post_hook)


def capture_layer(blocks: Sequence, layer: int, run: Callable[[], object]):
    """Run ``run()`` and return the hidden states of ``layer``, read through hooks.

    Layer 0 is the input of ``blocks[0]`` (the embedding output); layer i >= 1 is the
    output of ``blocks[i-1]``. The model's code is not edited: a forward (pre-)hook stores
    the tensor and stops the forward pass, so later blocks are not computed.

    Parameters
    ----------
    blocks : sequence of torch.nn.Module
        The model's residual blocks in order.
    layer : int
        0..len(blocks).
    run : callable
        Runs the model's forward pass.
    """
    captured: list = []
    handle = _hook_layer(blocks, layer, captured, stop=True)
    try:
        run()
    except _StopForward:
        pass
    finally:
        handle.remove()
    if not captured:
        raise RuntimeError(f"layer {layer}: the hook was never called")
    return captured[0]


def capture_layer_and_output(blocks: Sequence, layer: int, run: Callable[[], object]):
    """``(hidden states of layer, run()'s result)``: as :func:`capture_layer`, but the
    forward pass runs to the end (the LM's bits need its head)."""
    captured: list = []
    handle = _hook_layer(blocks, layer, captured, stop=False)
    try:
        out = run()
    finally:
        handle.remove()
    if not captured:
        raise RuntimeError(f"layer {layer}: the hook was never called")
    return captured[0], out


@contextlib.contextmanager
def patch_layer(blocks: Sequence, layer: int, replace: Callable, channels_first: bool = False):
    """While the context is open, the hidden states of ``layer`` are replaced by ``replace(h)``.

    Layer 0 is the input of ``blocks[0]`` (a forward pre-hook), layer i >= 1 the output of
    ``blocks[i-1]`` (a forward hook), as in :func:`capture_layer`; the blocks after it see
    the replacement. ``replace`` always sees ``[B, L, d]``: with ``channels_first`` the
    model's ``[B, d, L]`` tensors are transposed around it. When a block returns a tuple
    (Hugging Face layers), only its first element is replaced.
    """
    def swap(h):
        return replace(h.transpose(1, 2)).transpose(1, 2) if channels_first else replace(h)

    def pre_hook(module, args, kwargs):
        if args:
            return (swap(args[0]), *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": swap(kwargs["hidden_states"])}

    def post_hook(module, args, output):
        if isinstance(output, tuple):
            return (swap(output[0]), *output[1:])
        return swap(output)

    if layer == 0:
        handle = blocks[0].register_forward_pre_hook(pre_hook, with_kwargs=True)
    else:
        handle = blocks[layer - 1].register_forward_hook(post_hook)
    try:
        yield
    finally:
        handle.remove()


class GeneModel(abc.ABC):
    """A gene LM behind one interface.

    Attributes
    ----------
    name : str
    d_model : int
        Width of the hidden states.
    n_layers : int
        Blocks; valid layers are 0 (embedding output) .. n_layers (output of block i).
    identity : dict
        ``{"name", "path", "sha256"}`` (sha256 of the weight files).
    default_window, default_stride : int
        In tokens.
    device : torch.device
    """

    name: str
    d_model: int
    n_layers: int
    identity: dict
    default_window: int
    default_stride: int
    device: object
    max_window: int | None = None  # longest window the model takes, None if unbounded

    @abc.abstractmethod
    def tokenize(self, sequence: str) -> TokenizedSequence:
        """Token ids and bp coordinates of ``sequence`` (special tokens dropped)."""

    @abc.abstractmethod
    def forward_windows(self, token_ids: np.ndarray, layer: int) -> np.ndarray:
        """Hidden states of ``layer`` for a batch of equal-length token windows.

        Parameters
        ----------
        token_ids : numpy.ndarray, shape (B, W), int64
        layer : int

        Returns
        -------
        numpy.ndarray, shape (B, W, d_model), float32
            One row per input token (special tokens the model adds are removed).
        """

    def lm_bits_unavailable(self) -> str | None:
        """Why this model gives no per-token LM bits (None when it does, see ``forward_windows_bits``)."""
        return f"model {self.name} has no next-token head loaded"

    def forward_windows_bits(self, token_ids: np.ndarray, layer: int) -> tuple[np.ndarray, np.ndarray]:
        """Hidden states of ``layer`` and the LM's bits for every token of a batch of windows.

        Parameters
        ----------
        token_ids : numpy.ndarray, shape (B, W), int64
        layer : int

        Returns
        -------
        (numpy.ndarray (B, W, d_model) float32, numpy.ndarray (B, W) float32)
            The hidden states (as ``forward_windows``) and ``-log2 P(token t | tokens < t of
            the window)``; NaN at t = 0 and wherever the model makes no prediction.
        """
        raise NotImplementedError(self.lm_bits_unavailable())

    def layer_info(self) -> dict:
        """Extra per-layer facts (e.g. receptive field in bp); empty if unknown."""
        return {}

    def check_layer(self, layer: int) -> int:
        """Return ``layer`` as int, or raise InputError if it is out of range."""
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
            raise InputError(f"--layer {layer!r}: must be an integer 0..{self.n_layers}")
        if not 0 <= int(layer) <= self.n_layers:
            raise InputError(
                f"--layer {layer}: out of range for {self.name} (valid layers 0..{self.n_layers}: "
                "0 = embeddings, i = output of block i)"
            )
        return int(layer)

    def extract(
        self,
        sequence: str,
        layer: int,
        window: int | None = None,
        stride: int | None = None,
        batch_size: int = 8,
        start_token: int = 0,
        lm_bits: bool = False,
    ) -> Iterator[ActivationBlock]:
        """Activations of ``layer`` for every token of ``sequence``, in token order.

        Windows of ``window`` tokens every ``stride`` tokens (``windows.window_starts``);
        each token comes from the window where it sits furthest from an edge. Windows go
        through the model ``batch_size`` at a time on a fixed grid counted from window 0,
        and a call with ``start_token > 0`` recomputes the whole batch that holds it, so a
        token's values are bit-identical whatever ``start_token`` is.

        Parameters
        ----------
        sequence : str
            DNA (any case; N and IUPAC codes allowed).
        layer : int
            0..n_layers.
        window, stride : int, optional
            Tokens; the model's defaults when None.
        batch_size : int
            Windows per forward pass (part of the determinism grid: keep it fixed when
            resuming).
        start_token : int
            First token to return (0..T).
        lm_bits : bool
            Also return each token's LM bits (``ActivationBlock.lm_bits``) from the window that
            owns it: those of a whole-sequence forward where windows overlap by twice the context.

        Yields
        ------
        ActivationBlock
            One block per forward batch covering tokens ``start_token..T-1`` exactly once.
        """
        layer = self.check_layer(layer)
        window, stride, batch_size = self._extract_settings(window, stride, batch_size)
        toks = self.tokenize(sequence)
        n = len(toks)
        if not 0 <= start_token <= n:
            raise InputError(f"start_token {start_token}: outside 0..{n}")
        if n == 0 or start_token == n:
            return
        starts = window_starts(n, window, stride)
        ranges = owned_ranges(n, window, stride)
        w = min(window, n)
        first_window = int(np.searchsorted(ranges[:, 1], start_token, side="right"))
        for b0 in range((first_window // batch_size) * batch_size, len(starts), batch_size):
            b1 = min(b0 + batch_size, len(starts))
            ids = np.stack([toks.token_ids[s : s + w] for s in starts[b0:b1]])
            hidden, bits = self.forward_windows_bits(ids, layer) if lm_bits else (self.forward_windows(ids, layer), None)
            block = _owned_block(toks, hidden, starts[b0:b1], ranges[b0:b1], start_token, bits)
            if block is not None:
                yield block

    def _extract_settings(self, window, stride, batch_size) -> tuple[int, int, int]:
        """``(window, stride, batch_size)`` with the model's defaults filled in, checked."""
        window = int(self.default_window if window is None else window)
        stride = int(self.default_stride if stride is None else stride)
        check_window(window, stride)
        if self.max_window is not None and window > self.max_window:
            raise InputError(f"--window {window}: longer than {self.name} takes ({self.max_window} tokens)")
        if int(batch_size) < 1:
            raise InputError(f"--batch-size {batch_size}: must be at least 1")
        return window, stride, int(batch_size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, d_model={self.d_model}, n_layers={self.n_layers})"


def _owned_block(toks: TokenizedSequence, hidden: np.ndarray, starts: np.ndarray, ranges: np.ndarray,
                 start_token: int, bits: np.ndarray | None = None) -> ActivationBlock | None:
    """The tokens a batch of windows owns (from ``start_token`` on) as one block, or None.

    ``hidden [b, w, d]`` are the windows' activations, ``starts [b]`` their first tokens,
    ``ranges [b, 2]`` the token range each window owns, ``bits [b, w]`` optional LM bits.
    """
    parts = []
    for j, (s, (lo, hi)) in enumerate(zip(starts, ranges)):
        lo, hi, s = max(int(lo), start_token), int(hi), int(s)
        if lo < hi:
            parts.append((lo, hi, hidden[j][lo - s : hi - s], None if bits is None else bits[j][lo - s : hi - s]))
    if not parts:
        return None
    lo, hi = parts[0][0], parts[-1][1]
    acts = np.ascontiguousarray(np.concatenate([p[2] for p in parts], axis=0), dtype=np.float32)
    lm = None if bits is None else np.ascontiguousarray(np.concatenate([p[3] for p in parts]), dtype=np.float32)
    return ActivationBlock(toks.token_ids[lo:hi], toks.bp_start[lo:hi], toks.bp_end[lo:hi], acts, lm)
