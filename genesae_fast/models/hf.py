"""Local Hugging Face checkpoints as ``GeneModel``s, loaded offline.

Tokenizer families of gene LMs and how bp coordinates are found:

- character level (HyenaDNA, Caduceus): one token per base;
- non-overlapping k-mers (Nucleotide Transformer's 6-mers, ESM-style tokenizer): greedy
  k-mers with single bases where a k-mer does not fit (N, record ends);
- BPE (DNABERT-2, GENA-LM): variable-length pieces;
- overlapping k-mers (DNABERT): the vocabulary is every k-mer of one length and the
  tokenizer is a BERT word tokenizer over space-separated k-mers; token i covers
  bp [i, i+k). Its ids are built here directly (k-mer arithmetic).

For the first three the sequence goes through the checkpoint's own tokenizer; coordinates
come from its offset mapping when it gives one (fast tokenizers), otherwise by walking the
token strings along the sequence (each token spells the bases it covers). The sequence is
upper-cased and non-ACGT letters become N first (same length, so coordinates hold).

Hidden states are read with hooks on the model's block list (the ``nn.ModuleList`` with
one module per layer), never by editing the model's code.

A checkpoint whose config names a causal-LM architecture (``*ForCausalLM``,
``*LMHeadModel``) is loaded with its next-token head, so it also gives each token's LM bits
(``forward_windows_bits``); other checkpoints (masked LMs, bare encoders) give none.
"""
from __future__ import annotations

import hashlib
import inspect
import os
import re
from pathlib import Path

import numpy as np

from genesae_fast.errors import InputError
from genesae_fast.models.base import (
    GeneModel,
    TokenizedSequence,
    capture_layer,
    capture_layer_and_output,
    patch_layer,
    resolve_device,
)

WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt")
_NON_ACGT = re.compile(r"[^ACGT]")
# markers tokenizers put on word pieces; they spell no bases
_PIECE_MARKERS = ("##", "\u0120", "\u2581")
_DNA_TOKEN = re.compile(r"^[ACGTN]+$")
_CAUSAL_ARCHITECTURES = ("ForCausalLM", "LMHeadModel")


def load_weights(folder, config, kwargs: dict):
    """``(model, causal)``: the checkpoint with its next-token head when its config names a
    causal-LM architecture (and that loads), else the bare model (``AutoModel``)."""
    from transformers import AutoModel, AutoModelForCausalLM

    if any(str(a).endswith(_CAUSAL_ARCHITECTURES) for a in getattr(config, "architectures", None) or []):
        try:
            return AutoModelForCausalLM.from_pretrained(folder, **kwargs), True
        except Exception:  # noqa: BLE001 - no head class for this config: the bare model, as before
            pass
    return AutoModel.from_pretrained(folder, **kwargs), False


def normalize_sequence(sequence: str) -> str:
    """Upper case; every letter other than A, C, G, T becomes N (length unchanged)."""
    return _NON_ACGT.sub("N", sequence.upper())


def weights_sha256(folder: Path) -> str:
    """sha256 of a checkpoint's weight files: the file's own hash if there is one file,
    else the hash of the sorted ``name<TAB>sha256`` lines."""
    from genesae_fast.sequences import file_sha256

    files = sorted({p for pat in WEIGHT_PATTERNS for p in folder.glob(pat) if p.is_file()})
    if not files:
        return "none"
    if len(files) == 1:
        return file_sha256(files[0])
    lines = "".join(f"{p.name}\t{file_sha256(p)}\n" for p in files)
    return hashlib.sha256(lines.encode()).hexdigest()


def find_blocks(model, n_layers: int | None):
    """The model's list of layer modules: the ``nn.ModuleList`` with ``n_layers`` entries
    holding the most parameters (or the largest ModuleList when ``n_layers`` is unknown)."""
    from torch import nn

    best, best_size = None, -1
    for _, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            if n_layers is not None and len(module) != n_layers:
                continue
            size = sum(p.numel() for p in module.parameters())
            if size > best_size:
                best, best_size = module, size
    return best


def _config_int(config, names) -> int | None:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def kmer_vocab_length(tokenizer) -> int | None:
    """k if the tokenizer is a word tokenizer whose non-special vocabulary is exactly the
    4^k DNA k-mers of one length k >= 2 (DNABERT), else None."""
    if "bert" not in type(tokenizer).__name__.lower():
        return None
    special = set(tokenizer.all_special_tokens)
    words = [t for t in tokenizer.get_vocab() if t not in special]
    lengths = {len(w) for w in words}
    if len(lengths) != 1:
        return None
    k = lengths.pop()
    if k < 2 or len(words) != 4**k or not all(_DNA_TOKEN.match(w) and "N" not in w for w in words):
        return None
    return k


def walk_coordinates(pieces: list[str], sequence: str, unk_token: str | None, char_level: bool) -> tuple[np.ndarray, np.ndarray]:
    """bp coordinates of token strings laid end to end along ``sequence``.

    Each token's string (without word-piece markers) must spell the bases at the cursor;
    an unknown token covers one base when the vocabulary is character level.

    Raises
    ------
    InputError
        If a token does not match the sequence (the tokenizer changed the text).
    """
    starts = np.empty(len(pieces), dtype=np.int64)
    ends = np.empty(len(pieces), dtype=np.int64)
    pos = 0
    for i, piece in enumerate(pieces):
        if piece == unk_token:
            if not char_level:
                raise InputError(
                    f"tokenizer produced {unk_token} without offsets at bp {pos}: cannot place it on the sequence"
                )
            text = sequence[pos : pos + 1]
        else:
            text = piece
            for marker in _PIECE_MARKERS:
                if text.startswith(marker):
                    text = text[len(marker):]
            text = text.upper()
            if sequence[pos : pos + len(text)] != text:
                raise InputError(f"tokenizer piece {piece!r} does not match the sequence at bp {pos}")
        starts[i] = pos
        pos += len(text)
        ends[i] = pos
    return starts, ends


class HFModel(GeneModel):
    """A local Hugging Face checkpoint folder behind the ``GeneModel`` interface."""

    def __init__(self, folder: str | Path, device=None, trust_remote_code: bool = False):
        import torch

        folder = Path(folder)
        # belt and braces: a local folder never needs the Hub, and nothing may use the network
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from transformers import AutoConfig, AutoTokenizer
            from transformers.utils import logging as hf_logging
        except ImportError:
            raise InputError(f"--model {folder}: Hugging Face checkpoints need the 'transformers' package") from None
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        kwargs = {"local_files_only": True, "trust_remote_code": bool(trust_remote_code)}
        try:
            self.hf_config = AutoConfig.from_pretrained(folder, **kwargs)
            self.tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
            self.model, self.causal = load_weights(folder, self.hf_config, kwargs)
        except Exception as exc:  # transformers raises many types; the user needs one line
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if "trust_remote_code" in str(exc) and not trust_remote_code:
                raise InputError(f"--model {folder}: the checkpoint needs its own code; pass --trust-remote-code if you trust it") from None
            raise InputError(f"--model {folder}: cannot load the Hugging Face checkpoint ({message})") from None
        self.device = resolve_device(device)
        # some gene LMs (HyenaDNA) take no attention mask
        self._takes_mask = "attention_mask" in inspect.signature(self.model.forward).parameters
        self.model.to(self.device).eval()
        n_layers = _config_int(self.hf_config, ("num_hidden_layers", "n_layer", "num_layers", "n_layers"))
        blocks = find_blocks(self.model, n_layers) or find_blocks(self.model, None)
        if blocks is None:
            raise InputError(f"--model {folder}: no list of layer modules found in the model")
        self.blocks = blocks
        self.n_layers = len(blocks)
        self.name = folder.name
        self.identity = {"name": self.name, "path": str(folder.resolve()), "sha256": weights_sha256(folder)}
        self.kmer = kmer_vocab_length(self.tokenizer)
        vocab = self.tokenizer.get_vocab()
        special = set(self.tokenizer.all_special_tokens)
        # character level: every vocabulary entry that spells DNA is one base long
        dna_words = [t for t in vocab if t not in special and _DNA_TOKEN.match(t.upper())]
        self._char_level = bool(dna_words) and all(len(t) == 1 for t in dna_words)
        if self.kmer:
            self._kmer_lookup = self._build_kmer_lookup(vocab)
        self._char_lookup = self._build_char_lookup(vocab) if self._char_level and not self.kmer else None
        self._prefix, self._suffix = self._special_affixes()
        self.max_window = self._max_tokens() - len(self._prefix) - len(self._suffix)
        if self.max_window < 1:
            raise InputError(f"--model {folder}: its maximum input length leaves no room for tokens")
        self.default_window = int(min(self.max_window, 1024))
        self.default_stride = max(1, self.default_window - self.default_window // 8)
        self.d_model = _config_int(self.hf_config, ("hidden_size", "d_model", "n_embd", "dim")) or self._probe_width()
        self._torch = torch
        self._folder, self._remote = folder, bool(trust_remote_code)
        self._lm = None  # the checkpoint with its next-token head, loaded on first use

    # -- tokenization -----------------------------------------------------------------

    def _build_kmer_lookup(self, vocab: dict) -> np.ndarray:
        from genesae_fast.sequences import encode

        k = self.kmer
        lookup = np.full(4**k, self.tokenizer.unk_token_id, dtype=np.int64)
        weights = 4 ** np.arange(k - 1, -1, -1, dtype=np.int64)
        for word, idx in vocab.items():
            if len(word) == k and _DNA_TOKEN.match(word) and "N" not in word:
                lookup[int((np.asarray(encode(word), dtype=np.int64) * weights).sum())] = idx
        return lookup

    def _build_char_lookup(self, vocab: dict) -> np.ndarray | None:
        """Byte -> id table for a character-level vocabulary, kept only if it reproduces the
        tokenizer's own ids on a probe with every base, N and their lowercase (the
        tokenizer's Python/regex path costs ~17 us a base; the table, nanoseconds)."""
        unk = self.tokenizer.unk_token_id
        lookup = np.full(256, -1 if unk is None else unk, dtype=np.int64)
        for letter in "ACGTN":
            if letter in vocab:
                lookup[ord(letter)] = vocab[letter]
        probe = "ACGTNNACGTTGCAAN"
        want = self.tokenizer(probe, add_special_tokens=False)["input_ids"]
        got = lookup[np.frombuffer(probe.encode(), dtype=np.uint8)]
        return lookup if list(want) == got.tolist() and (got >= 0).all() else None

    def _kmer_tokens(self, seq: str) -> TokenizedSequence:
        from genesae_fast.sequences import encode

        k = self.kmer
        n = max(0, len(seq) - k + 1)
        if n == 0:
            empty = np.zeros(0, dtype=np.int64)
            return TokenizedSequence(empty, empty.copy(), empty.copy())
        codes = np.asarray(encode(seq), dtype=np.int64)
        index = np.zeros(n, dtype=np.int64)
        bad = np.zeros(n, dtype=bool)
        for j in range(k):
            part = codes[j : j + n]
            index = index * 4 + np.minimum(part, 3)
            bad |= part > 3
        ids = self._kmer_lookup[index]
        ids[bad] = self.tokenizer.unk_token_id
        start = np.arange(n, dtype=np.int64)
        return TokenizedSequence(ids, start, start + k)

    def tokenize(self, sequence: str) -> TokenizedSequence:
        """Token ids and bp coordinates (special tokens dropped)."""
        seq = normalize_sequence(sequence)
        if self.kmer:
            return self._kmer_tokens(seq)
        if not seq:
            empty = np.zeros(0, dtype=np.int64)
            return TokenizedSequence(empty, empty.copy(), empty.copy())
        if self._char_lookup is not None:
            ids = self._char_lookup[np.frombuffer(seq.encode("ascii"), dtype=np.uint8)]
            pos = np.arange(len(seq), dtype=np.int64)
            return TokenizedSequence(ids, pos, pos + 1)
        tok = self.tokenizer
        enc = None
        if getattr(tok, "is_fast", False):
            enc = tok(seq, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
            ids = np.asarray(enc["input_ids"], dtype=np.int64)
            offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
            if self._offsets_valid(offsets, len(seq)):
                return TokenizedSequence(ids, offsets[:, 0].copy(), offsets[:, 1].copy())
        else:
            ids = np.asarray(tok(seq, add_special_tokens=False, verbose=False)["input_ids"], dtype=np.int64)
        pieces = tok.convert_ids_to_tokens(ids.tolist())
        start, end = walk_coordinates(pieces, seq, tok.unk_token, self._char_level)
        return TokenizedSequence(ids, start, end)

    @staticmethod
    def _offsets_valid(offsets: np.ndarray, n: int) -> bool:
        """Offsets that tile the sequence: in bounds, non-empty, each starting where the last ended."""
        if len(offsets) == 0:
            return n == 0
        s, e = offsets[:, 0], offsets[:, 1]
        return bool(s[0] == 0 and e[-1] == n and (e > s).all() and (s[1:] == e[:-1]).all())

    def _special_affixes(self) -> tuple[list[int], list[int]]:
        """Special token ids the tokenizer puts before and after a sequence."""
        tok = self.tokenizer
        probe = "ACGTACGTACGT" if not self.kmer else " ".join(["A" * self.kmer] * 2)
        plain = tok(probe, add_special_tokens=False)["input_ids"]
        full = tok(probe, add_special_tokens=True)["input_ids"]
        for i in range(len(full) - len(plain) + 1):
            if full[i : i + len(plain)] == plain:
                return list(full[:i]), list(full[i + len(plain):])
        return [], []

    def _max_tokens(self) -> int:
        """Longest input the model takes, special tokens included."""
        limits = []
        model_max = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(model_max, int) and 0 < model_max < 10**8:
            limits.append(model_max)
        positions = _config_int(self.hf_config, ("max_position_embeddings", "n_positions", "max_seq_len"))
        if positions:
            # RoBERTa/ESM-style position ids start after the padding index: keep a margin of 2
            limits.append(positions - 2 if getattr(self.hf_config, "model_type", "") in ("esm", "roberta", "xlm-roberta") else positions)
        return min(limits) if limits else 4096

    def _probe_width(self) -> int:
        ids = np.full((1, 1), self.tokenizer.unk_token_id or 0, dtype=np.int64)
        return int(self.forward_windows(ids, 0).shape[-1])

    def lm_bits_unavailable(self) -> str | None:
        """None for a causal LM with its head; otherwise why there are no bits."""
        if self.causal:
            return None
        archs = ", ".join(getattr(self.hf_config, "architectures", None) or []) or "none named"
        return (f"model {self.name}: its config names no causal-LM architecture with a next-token head "
                f"(architectures: {archs})")

    def forward_windows_bits(self, token_ids: np.ndarray, layer: int) -> tuple[np.ndarray, np.ndarray]:
        """Hidden states [B, W, d] of ``layer`` and each token's bits [B, W] given the tokens
        before it in the window (NaN at t = 0 and for tokens that are not all A/C/G/T)."""
        if not self.causal:
            raise NotImplementedError(self.lm_bits_unavailable())
        torch = self._torch
        inputs, n_pre, w = self._inputs(token_ids)
        with torch.inference_mode():
            hidden, out = capture_layer_and_output(self.blocks, layer, lambda: self.model(**inputs))
            logp = torch.log_softmax(out.logits[:, n_pre:n_pre + w - 1].float(), dim=-1)  # predicts tokens 1..w-1
            ids = inputs["input_ids"][:, n_pre + 1:n_pre + w]
            picked = (torch.gather(logp, 2, ids[:, :, None])[:, :, 0] / -np.log(2)).cpu().numpy()
            acts = hidden[:, n_pre:n_pre + w].float().cpu().numpy()
        bits = np.full(token_ids.shape, np.nan, dtype=np.float32)
        bits[:, 1:] = np.where(self._acgt_tokens()[np.asarray(token_ids)[:, 1:]], picked, np.nan)
        return np.ascontiguousarray(acts), bits

    def _acgt_tokens(self) -> np.ndarray:
        """Per vocabulary id: whether the token spells only A/C/G/T (other tokens get no bits)."""
        if getattr(self, "_acgt", None) is None:
            n = max(len(self.tokenizer), max(self.tokenizer.get_vocab().values()) + 1)
            self._acgt = np.zeros(n, dtype=bool)
            for word, i in self.tokenizer.get_vocab().items():
                for marker in _PIECE_MARKERS:
                    word = word.replace(marker, "")
                self._acgt[i] = bool(word) and _NON_ACGT.search(word.upper()) is None
        return self._acgt

    # -- forward ----------------------------------------------------------------------

    def _inputs(self, token_ids: np.ndarray) -> tuple[dict, int, int]:
        """The model's inputs for a batch of windows (special tokens added), the prefix
        length and the window length."""
        torch = self._torch
        token_ids = np.asarray(token_ids, dtype=np.int64)
        b, w = token_ids.shape
        if w > self.max_window:
            raise InputError(f"--window {w}: longer than {self.name} takes ({self.max_window} tokens)")
        pre = np.tile(np.asarray(self._prefix, dtype=np.int64), (b, 1))
        suf = np.tile(np.asarray(self._suffix, dtype=np.int64), (b, 1))
        ids = torch.as_tensor(np.concatenate([pre, token_ids, suf], axis=1), device=self.device)
        inputs = {"input_ids": ids}
        if self._takes_mask:
            inputs["attention_mask"] = torch.ones_like(ids)  # windows are never padded
        return inputs, len(self._prefix), w

    def forward_windows(self, token_ids: np.ndarray, layer: int) -> np.ndarray:
        """Hidden states [B, W, d] of ``layer`` with the model's special tokens added and removed."""
        torch = self._torch
        inputs, n_pre, w = self._inputs(token_ids)
        with torch.inference_mode():
            hidden = capture_layer(self.blocks, layer, lambda: self.model(**inputs))
        return np.ascontiguousarray(hidden[:, n_pre : n_pre + w].float().cpu().numpy())

    # -- next-base log-probs with a patched layer (causal evidence) -------------------

    context_bp = None  # attention reads the whole window: no finite receptive field

    def _causal_lm(self):
        """``(model with a next-token head, its block list, ids of A/C/G/T)``, loaded once.

        Only character-level causal checkpoints qualify: their next token is the next base.
        """
        if self._lm is not None:
            return self._lm
        if not self._char_level or self.kmer or self._prefix or self._suffix:
            raise InputError(f"--model {self._folder}: next-base log-probs need a character-level causal LM "
                             "with no special tokens around a sequence")
        if self.causal:  # loaded with its head already (load_weights): no second copy
            lm, blocks = self.model, self.blocks
        else:
            lm, blocks = self._load_head()
        vocab = self.tokenizer.get_vocab()
        if blocks is None or any(b not in vocab for b in "ACGT"):
            raise InputError(f"--model {self._folder}: cannot find its layers or the A/C/G/T tokens")
        self._lm = (lm, blocks, [vocab[b] for b in "ACGT"])
        return self._lm

    def _load_head(self):
        """``(checkpoint with its next-token head, its blocks)`` for a model loaded without it."""
        from transformers import AutoModelForCausalLM

        try:
            lm = AutoModelForCausalLM.from_pretrained(self._folder, local_files_only=True,
                                                      trust_remote_code=self._remote)
        except Exception as exc:  # transformers raises many types; the user needs one line
            line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise InputError(f"--model {self._folder}: no causal LM head to load ({line})") from None
        lm.to(self.device).eval()
        return lm, find_blocks(lm, self.n_layers)

    def next_base_logprobs(self, token_ids: np.ndarray, layer: int | None = None, replace=None):
        """Log-probabilities of the next base, optionally with ``layer``'s output replaced.

        Same contract as the built-in model's method: ``token_ids [B, W]`` (this model's
        ids, one per base) -> float32 ``[B, W, 4]``, column t = log P(base t + 1 | bases
        0..t) over A, C, G, T (the head's logits of those four tokens, renormalised).
        ``replace`` sees the layer's hidden states ``[B, W, d_model]`` through a hook.
        """
        import contextlib

        torch = self._torch
        lm, blocks, acgt = self._causal_lm()
        ids = torch.as_tensor(np.ascontiguousarray(token_ids), dtype=torch.long, device=self.device)
        patch = contextlib.nullcontext() if replace is None else patch_layer(blocks, self.check_layer(layer), replace)
        with torch.inference_mode(), patch:
            logits = lm(input_ids=ids).logits[..., acgt].float()
        return torch.log_softmax(logits, dim=-1)
