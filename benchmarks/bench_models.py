"""Layer extraction speed of the built-in gene LM (CPU) and its held-out bits/bp.

Run: ``/work/venv/bin/pytest benchmarks/bench_models.py --benchmark-only -s``

- ``test_extract``: ``GeneModel.extract`` over 200 kbp of the bundled genome at layers 2
  and 6, default windows (2048 bp, stride 1792), batch 8; tokens/s in ``extra_info``.
- ``test_forward_reference``: the same windows through the bare network with no windowing,
  hooks or copies: the ratio to it is the interface's overhead (windows overlap by 1/8,
  so about 1.14x is the floor).
- ``test_heldout_bits``: held-out bits/bp of the shipped weights on the last 5% of the
  bundled genome beside the best order-k Markov model (k = 0..10), recomputed here.
"""
from __future__ import annotations

import numpy as np
import pytest

N_BP = 200_000


@pytest.fixture(scope="module")
def setup():
    import torch

    from genesae_fast.data import genome_path
    from genesae_fast.models import load_model
    from genesae_fast.sequences import read_fasta

    torch.set_num_threads(2)
    model = load_model("builtin", device="cpu")
    record = read_fasta(genome_path())[0]
    return model, record


@pytest.mark.parametrize("layer", [2, 6])
def test_extract(benchmark, setup, layer):
    model, record = setup
    seq = record.sequence[:N_BP]

    def run():
        return sum(len(b) for b in model.extract(seq, layer, batch_size=8))

    n = benchmark.pedantic(run, rounds=3, iterations=1)
    assert n == N_BP
    benchmark.extra_info["tokens_per_s"] = N_BP / benchmark.stats.stats.mean


def test_forward_reference(benchmark, setup):
    import torch

    model, record = setup
    ids = torch.as_tensor(np.asarray(record.codes[:N_BP], dtype=np.int64))
    w, s = model.default_window, model.default_stride
    starts = list(range(0, N_BP - w, s)) + [N_BP - w]
    windows = torch.stack([ids[i : i + w] for i in starts])

    def run():
        with torch.inference_mode():
            for b in range(0, len(windows), 8):
                model.net(windows[b : b + 8])

    benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info["tokens_per_s"] = N_BP / benchmark.stats.stats.mean


def test_heldout_bits(benchmark, setup):
    from genesae_fast.models.builtin import evaluate_bits
    from genesae_fast.models.lm_train import split_records
    from genesae_fast.models.markov import best_markov

    model, record = setup
    train, held = split_records([record])

    def run():
        bits, n = evaluate_bits(model.net, held, model.config["receptive_field_bp"][-1], model.device)
        return bits / n, best_markov(train, held)

    lm_bits, markov = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(heldout_bits_per_bp=lm_bits, markov_bits_per_bp=markov["markov_bits_per_bp"],
                                markov_order=markov["markov_order"])
    print(f"\nbuilt-in LM {lm_bits:.4f} bits/bp; best Markov order {markov['markov_order']}: "
          f"{markov['markov_bits_per_bp']:.4f} bits/bp")
    assert lm_bits < markov["markov_bits_per_bp"]
