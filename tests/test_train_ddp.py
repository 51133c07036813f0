"""Data-parallel training (torch.distributed, gloo on CPU) equals one process with the
combined batch."""
from __future__ import annotations

import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from genesae_fast.train import train_sae
from genesae_fast.train.synthetic import planted_dictionary, write_store

B = 32  # rows per rank per step
STEPS = 12
ARGS = dict(latents=32, k=3, tokens=2 * B * STEPS, progress=False, evaluate=False, dead_tokens=2 * B * 4, threads=1)


def _worker(rank, world, init_file, store, out):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        train_sae(store, out, batch_size=B, **ARGS)
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_equals_one_process_with_combined_batch(tmp_path):
    X, _ = planted_dictionary(1600, 8, 16, 2, seed=5)
    store = str(write_store(X, tmp_path / "s.zarr", chunk_rows=100))
    single = train_sae(store, tmp_path / "one", batch_size=2 * B, **ARGS)
    mp.spawn(_worker, args=(2, str(tmp_path / "pg"), store, str(tmp_path / "two")), nprocs=2, join=True)
    a = load_file(str(single / "sae.safetensors"))
    b = load_file(str(tmp_path / "two" / "sae.safetensors"))
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5, msg=name)
    # the runs really moved away from their common start
    assert not torch.allclose(a["W_enc"], a["W_dec"], atol=1e-3)
