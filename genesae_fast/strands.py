"""Both strands: the reverse-complement pass of a gene LM, mapped back to + strand coordinates.

A model that reads one direction (the built-in causal CNN, a causal Hugging Face LM) sees
a TF site on the - strand as different text from the same site on the + strand, so its
features tend to fire on one strand only. The *reverse-complement pass* runs the same
model on the reverse complement of every record and maps each token back to + strand
coordinates: a record of length ``L`` whose RC token covers RC bases ``[s, e)`` covers
+ strand bases ``[L - e, L - s)``. Tokens are then put in increasing + strand order, so
the pass is an ordinary :class:`~genesae_fast.models.GeneModel` and its activations go to
an ordinary store (``genesae_fast.store.strands`` for the layout). For a 1-bp tokenizer
the RC pass's token at base ``p`` is the model's state after reading the - strand from
the record's end down to ``p``: the same site, read in the direction of its own strand.

``strands`` options: ``"forward"`` (one pass, today's results), ``"both"`` (also the RC
pass), ``"auto"`` (both for models that read one direction, forward for bidirectional ones).
"""
from __future__ import annotations

import numpy as np

from genesae_fast.errors import InputError
from genesae_fast.models.base import GeneModel, TokenizedSequence

STRAND_CHOICES = ("auto", "both", "forward")

# Hugging Face model types that read left to right (decoders); every other checkpoint
# (BERT-style DNABERT, Nucleotide Transformer, Caduceus) sees both sides of a token.
CAUSAL_MODEL_TYPES = frozenset({
    "gpt2", "gpt_neox", "gptj", "llama", "mistral", "mixtral", "qwen2", "phi", "phi3", "gemma", "mamba",
    "mamba2", "hyenadna", "hyena", "stripedhyena", "evo", "rwkv", "bloom", "opt", "falcon",
})

# IUPAC complement (case kept): the RC pass tokenizes exactly what the - strand spells
_COMPLEMENT = str.maketrans("ACGTUNRYKMSWBDHVacgtunrykmswbdhv", "TGCAANYRMKSWVHDBtgcaanyrmkswvhdb")


def check_strands(value: str, option: str = "--strands") -> str:
    """``value`` if it is one of ``STRAND_CHOICES``, else a one-line InputError."""
    if value not in STRAND_CHOICES:
        raise InputError(f"{option} {value!r}: expected one of {', '.join(STRAND_CHOICES)}")
    return value


def reverse_complement(sequence: str) -> str:
    """The reverse complement of a DNA string (IUPAC codes complemented, other characters kept, case kept)."""
    return sequence.translate(_COMPLEMENT)[::-1]


def rc_spans(rc_start: np.ndarray, rc_end: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """+ strand spans of tokens with spans ``[rc_start, rc_end)`` on the reverse complement.

    Parameters
    ----------
    rc_start, rc_end : numpy.ndarray, shape (T,), int64 -- in RC token order
    length : int -- the record's length in bp

    Returns
    -------
    (start, end) : numpy.ndarray, shape (T,), int64 -- in reversed order, so increasing on +
    """
    rc_start = np.asarray(rc_start, dtype=np.int64)
    rc_end = np.asarray(rc_end, dtype=np.int64)
    return (int(length) - rc_end)[::-1].copy(), (int(length) - rc_start)[::-1].copy()


def reads_one_direction(model) -> bool:
    """Whether ``model`` reads one direction (its - strand features differ from + ones).

    A model may say so itself (``model.causal``); the built-in CNN is causal; a Hugging Face
    checkpoint is causal when its config is a decoder, its architecture a causal LM, or its
    model type one of ``CAUSAL_MODEL_TYPES``. Anything else is taken as bidirectional.
    """
    declared = getattr(model, "causal", None)
    if declared is not None:
        return bool(declared)
    from genesae_fast.models.builtin import CharCNNModel

    if isinstance(model, CharCNNModel):
        return True
    cfg = getattr(model, "hf_config", None)
    if cfg is None:
        return False
    if getattr(cfg, "is_decoder", False):
        return True
    if any(str(a).endswith(("CausalLM", "LMHeadModel")) for a in (getattr(cfg, "architectures", None) or [])):
        return True
    return str(getattr(cfg, "model_type", "")).lower() in CAUSAL_MODEL_TYPES


def spec_reads_one_direction(spec) -> bool:
    """:func:`reads_one_direction` from a model SPEC without loading the weights: ``builtin`` and
    ``genesae lm train`` folders are causal; a Hugging Face folder is judged by its ``config.json``."""
    import json
    from pathlib import Path

    from genesae_fast.models.builtin import CONFIG_FILE

    if str(spec) == "builtin" or (Path(str(spec)) / CONFIG_FILE).is_file():
        return True
    try:
        cfg = json.loads((Path(str(spec)) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(cfg, dict):
        return False
    if cfg.get("is_decoder") or any(str(a).endswith(("CausalLM", "LMHeadModel")) for a in cfg.get("architectures") or []):
        return True
    return str(cfg.get("model_type", "")).lower() in CAUSAL_MODEL_TYPES


def resolve_strands(strands: str, model) -> str:
    """``"forward"`` or ``"both"`` for a ``strands`` option and a model (loaded, or its SPEC string)."""
    check_strands(strands)
    if strands == "auto":
        one_way = spec_reads_one_direction(model) if isinstance(model, str) else reads_one_direction(model)
        return "both" if one_way else "forward"
    return strands


class ReverseComplementModel(GeneModel):
    """The reverse-complement pass of ``inner`` as a ``GeneModel`` (tokens in + strand order).

    ``tokenize(seq)`` tokenizes ``reverse_complement(seq)`` and reverses the tokens with
    :func:`rc_spans`; ``forward_windows`` flips each window back to RC order, runs the inner
    model and flips its hidden states, so ``GeneModel.extract`` (windows, ownership, the
    determinism grid) works unchanged. ``spec``: how a worker process reloads ``inner``
    (``"builtin"`` or a model folder); without it the inner model itself is pickled.
    """

    strand = "-"

    def __init__(self, inner: GeneModel, spec: str | None = None, trust_remote_code: bool = False):
        self.inner, self._spec, self._trust = inner, spec, bool(trust_remote_code)
        self.name = inner.name
        self.d_model, self.n_layers = int(inner.d_model), int(inner.n_layers)
        self.identity = dict(inner.identity)
        self.default_window, self.default_stride = inner.default_window, inner.default_stride
        self.max_window = getattr(inner, "max_window", None)
        self.device = getattr(inner, "device", None)

    def tokenize(self, sequence: str) -> TokenizedSequence:
        """Tokens of the reverse complement, in + strand order with + strand spans."""
        t = self.inner.tokenize(reverse_complement(sequence))
        start, end = rc_spans(t.bp_start, t.bp_end, len(sequence))
        return TokenizedSequence(np.asarray(t.token_ids)[::-1].copy(), start, end)

    def forward_windows(self, token_ids: np.ndarray, layer: int) -> np.ndarray:
        """Hidden states [B, W, d] of windows given in + strand order (run in RC order)."""
        # copies, not views: a reversed view has negative strides, which torch refuses
        hidden = self.inner.forward_windows(np.asarray(token_ids)[:, ::-1].copy(order="C"), layer)
        return np.asarray(hidden)[:, ::-1].copy(order="C")

    def layer_info(self) -> dict:
        return self.inner.layer_info()

    def __reduce__(self):
        if self._spec is not None:
            return _rebuild, (self._spec, self._trust)
        return ReverseComplementModel, (self.inner,)


def _rebuild(spec: str, trust_remote_code: bool) -> ReverseComplementModel:
    """A worker's copy of the RC pass (workers only run on CPU)."""
    from genesae_fast.models import load_model

    inner = load_model(spec, device="cpu", trust_remote_code=trust_remote_code)
    return ReverseComplementModel(inner, spec, trust_remote_code)


__all__ = ["STRAND_CHOICES", "ReverseComplementModel", "check_strands", "rc_spans", "reads_one_direction",
           "resolve_strands", "reverse_complement", "spec_reads_one_direction"]
