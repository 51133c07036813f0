"""A tiny GeneModel for the extraction tests, and a subprocess entry point.

``TinyModel`` is a 2-block random conv net (d = 8) behind the real ``GeneModel``
interface, so extraction tests run in seconds and do not depend on the shipped weights.
Run as a script it extracts a genome into a store (used by the kill -9 and torchrun-style
tests): ``python test_extract_model.py GENOME OUT CHUNK_ROWS [DELAY [tiny|builtin]]``.
"""
from __future__ import annotations

import sys
import time

import numpy as np
import torch

from genesae_fast.models.base import GeneModel, TokenizedSequence
from genesae_fast.sequences import encode


class TinyModel(GeneModel):
    """Character tokens, two dilated conv blocks with fixed random weights."""

    def __init__(self, d: int = 8, seed: int = 0, delay: float = 0.0):
        g = torch.Generator().manual_seed(seed)
        self.name = "tiny"
        self.d_model = d
        self.n_layers = 2
        self.identity = {"name": "tiny", "path": "", "sha256": f"tiny-{d}-{seed}"}
        self.default_window = 64
        self.default_stride = 48
        self.device = torch.device("cpu")
        self.embed = torch.randn(5, d, generator=g)
        self.convs = [torch.randn(d, d, 3, generator=g) / d for _ in range(2)]
        self.delay = delay

    def tokenize(self, sequence: str) -> TokenizedSequence:
        codes = encode(sequence).astype(np.int64)
        pos = np.arange(len(codes), dtype=np.int64)
        return TokenizedSequence(codes, pos, pos + 1)

    def forward_windows(self, token_ids: np.ndarray, layer: int) -> np.ndarray:
        if self.delay:
            time.sleep(self.delay)
        with torch.no_grad():
            h = self.embed[torch.from_numpy(token_ids)].transpose(1, 2)  # [B, d, W]
            for i in range(layer):
                pad = 2 ** (i + 1)
                h = h + torch.tanh(torch.nn.functional.conv1d(torch.nn.functional.pad(h, (pad, 0)), self.convs[i],
                                                              dilation=2 ** i))
            return h.transpose(1, 2).contiguous().numpy().astype(np.float32)


def reference_activations(model, sequence: str, layer: int, window=None, stride=None, batch_size=8) -> np.ndarray:
    """All activations of one sequence from a single uninterrupted ``extract`` call."""
    blocks = list(model.extract(sequence, layer, window=window, stride=stride, batch_size=batch_size))
    return np.concatenate([b.activations for b in blocks]) if blocks else np.zeros((0, model.d_model), np.float32)


def test_tiny_model_keeps_the_determinism_contract():
    m = TinyModel()
    seq = "ACGTTGCAN" * 40
    full = reference_activations(m, seq, 2, batch_size=3)
    for start in (0, 1, 47, 200, 359):
        part = np.concatenate([b.activations for b in m.extract(seq, 2, batch_size=3, start_token=start)])
        assert np.array_equal(part, full[start:])


if __name__ == "__main__":
    from genesae_fast.extract import extract_to_store

    genome, out, chunk_rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
    delay = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    if len(sys.argv) > 5 and sys.argv[5] == "builtin":
        from genesae_fast.models import load_model

        model = load_model("builtin", device="cpu")
    else:
        model = TinyModel(delay=delay)
    extract_to_store(genome, model, 2, out, chunk_rows=chunk_rows, batch_size=4, progress=False)
