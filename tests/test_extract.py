"""Extraction into a store: values, coordinates, resume after kill -9, many ranks, refusals."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from genesae_fast.cli import cli
from genesae_fast.errors import InputError
from genesae_fast.extract import default_layer, extract_to_store
from genesae_fast.sequences import read_fasta, write_fasta
from genesae_fast.store import ActivationStore

sys.path.insert(0, str(Path(__file__).parent))
from test_extract_model import TinyModel, reference_activations  # noqa: E402

HELPER = Path(__file__).parent / "test_extract_model.py"


def _genome(path, rng, lengths=(700, 0, 333, 1200)):
    recs = []
    for i, n in enumerate(lengths):
        s = "".join(rng.choice(list("ACGTNacgt"), n))
        recs.append((f"seq{i}", s))
    write_fasta(recs, path)
    return path


def _array_files(store: Path) -> dict:
    """Every file of the store except commit records, by relative path."""
    out = {}
    for p in sorted(store.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(store))] = p.read_bytes()
    return out


@pytest.fixture
def genome(tmp_path, rng):
    return _genome(tmp_path / "g.fa", rng)


def test_extract_matches_the_model_and_tokenizer(tmp_path, genome):
    model = TinyModel()
    out = extract_to_store(genome, model, 2, tmp_path / "s.zarr", dtype="float32", chunk_rows=100, batch_size=4,
                           progress=False)
    s = ActivationStore.open(out, verify=True)
    recs = read_fasta(genome)
    expect = np.concatenate([reference_activations(model, r.sequence, 2, batch_size=4) for r in recs])
    assert s.n_rows == len(expect) == sum(len(r) for r in recs)
    assert np.array_equal(s.read_rows(0, s.n_rows), expect)
    seq, bs, be, tid = s.coordinates()
    assert s.sequence_names == [r.name for r in recs]
    for i, r in enumerate(recs):
        rows = np.flatnonzero(seq == i)
        tok = model.tokenize(r.sequence)
        assert np.array_equal(bs[rows], tok.bp_start) and np.array_equal(be[rows], tok.bp_end)
        assert np.array_equal(tid[rows], tok.token_ids)
    assert np.allclose(s.mean, expect.astype(np.float64).mean(0))
    centred = expect.astype(np.float64) - expect.astype(np.float64).mean(0)
    assert np.isclose(s.norm_scale, np.sqrt((centred ** 2).sum(1).mean()))
    assert s.attrs["layer"] == 2 and s.attrs["model"]["sha256"] == model.identity["sha256"]


def test_max_tokens_and_bfloat16(tmp_path, genome):
    model = TinyModel()
    s = ActivationStore.open(extract_to_store(genome, model, 1, tmp_path / "s.zarr", dtype="bfloat16",
                                              max_tokens=1000, chunk_rows=128, progress=False))
    recs = read_fasta(genome)
    full = np.concatenate([reference_activations(model, r.sequence, 1) for r in recs])[:1000]
    import torch

    want = torch.from_numpy(full).to(torch.bfloat16).float().numpy()
    assert s.n_rows == 1000 and s.dtype == "bfloat16"
    assert np.array_equal(s.read_rows(0, 1000), want)


def test_resume_after_lost_chunks_gives_same_bytes(tmp_path, genome):
    model = TinyModel()
    a = Path(extract_to_store(genome, model, 2, tmp_path / "a.zarr", chunk_rows=64, progress=False))
    b = Path(extract_to_store(genome, model, 2, tmp_path / "b.zarr", chunk_rows=64, progress=False))
    # Lose some commit records, one chunk file, and corrupt another committed chunk.
    for k in (3, 4, 20):
        (b / "_progress" / f"chunk-{k:09d}.json").unlink()
    (b / "activations" / "c" / "4" / "0").unlink()
    with open(b / "activations" / "c" / "7" / "0", "r+b") as f:
        f.seek(10)
        f.write(b"\xff\xff")
    extract_to_store(genome, model, 2, b, chunk_rows=64, progress=False)
    assert _array_files(a) == _array_files(b)


def test_mismatched_resume_is_refused(tmp_path, genome):
    model = TinyModel()
    out = tmp_path / "s.zarr"
    extract_to_store(genome, model, 2, out, chunk_rows=64, progress=False)
    with pytest.raises(InputError, match="different settings.*layer 2 -> 1"):
        extract_to_store(genome, model, 1, out, chunk_rows=64, progress=False)
    with pytest.raises(InputError, match="different settings.*model_sha256"):
        extract_to_store(genome, TinyModel(seed=1), 2, out, chunk_rows=64, progress=False)
    other = _genome(tmp_path / "h.fa", np.random.default_rng(7))
    with pytest.raises(InputError, match="genome_sha256"):
        extract_to_store(other, model, 2, out, chunk_rows=64, progress=False)
    extract_to_store(genome, model, 1, out, chunk_rows=64, overwrite=True, progress=False)
    assert ActivationStore.open(out).attrs["layer"] == 1
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("x")
    with pytest.raises(InputError, match="not an activation store"):
        extract_to_store(genome, model, 2, tmp_path / "junk", progress=False)


def test_bad_arguments(tmp_path, genome):
    model = TinyModel()
    with pytest.raises(InputError, match="--layer 3"):
        extract_to_store(genome, model, 3, tmp_path / "s.zarr", progress=False)
    with pytest.raises(InputError, match="--dtype"):
        extract_to_store(genome, model, 1, tmp_path / "s.zarr", dtype="int8", progress=False)
    with pytest.raises(InputError, match="stride"):
        extract_to_store(genome, model, 1, tmp_path / "s.zarr", window=8, stride=9, progress=False)
    with pytest.raises(InputError, match="no such file"):
        extract_to_store(tmp_path / "missing.fa", model, 1, tmp_path / "s.zarr", progress=False)
    assert not (tmp_path / "s.zarr").exists()


def test_default_layer():
    m = TinyModel()
    assert default_layer(m) == 1  # no receptive fields: middle block of 2
    m.n_layers = 6
    m.layer_info = lambda: {"receptive_field_bp": [1, 3, 7, 15, 31, 63, 127]}
    assert default_layer(m) == 3  # first block reaching a motif's width (12 bp)
    m.layer_info = lambda: {"receptive_field_bp": [1, 2, 3, 4, 5, 6, 7]}
    assert default_layer(m) == 6


def _run_helper(genome, out, chunk_rows, delay=0.0, env=None, model="tiny"):
    return subprocess.Popen([sys.executable, str(HELPER), str(genome), str(out), str(chunk_rows), str(delay), model],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _helper_in_process(genome, out):
    """What the helper script does, in this process (no interpreter start-up)."""
    return extract_to_store(genome, TinyModel(), 2, out, chunk_rows=64, batch_size=4, progress=False)


def test_kill_9_then_rerun_gives_identical_bytes(tmp_path, genome):
    full = Path(_helper_in_process(genome, tmp_path / "full.zarr"))
    rng = np.random.default_rng(3)
    killed = tmp_path / "killed.zarr"
    for attempt in range(2):  # SIGKILL twice at random moments after the first commit
        p = _run_helper(genome, killed, 64, delay=0.01)
        deadline = time.time() + 90
        while time.time() < deadline and not list((killed / "_progress").glob("chunk-*")) and p.poll() is None:
            time.sleep(0.01)
        time.sleep(float(rng.uniform(0, 0.15)))
        p.send_signal(signal.SIGKILL)
        p.wait()
        p.stderr.close()
    n_committed = len(list((killed / "_progress").glob("chunk-*")))
    assert 0 < n_committed < ActivationStore.open(full).n_chunks
    _helper_in_process(genome, killed)  # the same call, resumed
    assert not list(killed.rglob("*.partial")) and not list(killed.rglob(".*.tmp"))
    assert _array_files(full) == _array_files(killed)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_ranks(genome, out, chunk_rows, world, model="tiny"):
    port = _free_port()
    procs = []
    for rank in range(world):
        # torchrun's environment (it also sets OMP_NUM_THREADS=1)
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        procs.append(_run_helper(genome, out, chunk_rows, env=env, model=model))
    for p in procs:
        with p:  # closes the stderr pipe
            assert p.wait(timeout=180) == 0, p.stderr.read().decode()[-2000:]


def test_two_ranks_equal_one_rank_and_resume_with_other_world_size(tmp_path, genome):
    # The built-in model: its CPU kernels' bits depend on the thread count, which differs
    # between this process and torchrun's ranks unless extraction pins it.
    from genesae_fast.models import load_model

    model = load_model("builtin", device="cpu")
    run_here = lambda out: Path(extract_to_store(genome, model, 2, out, chunk_rows=64, batch_size=4,  # noqa: E731
                                                 progress=False))
    torch_threads = torch.get_num_threads()
    one = run_here(tmp_path / "one.zarr")
    assert torch.get_num_threads() == torch_threads  # restored
    two = tmp_path / "two.zarr"
    _run_ranks(genome, two, 64, 2, model="builtin")
    assert _array_files(one) == _array_files(two)
    # Half the chunks lost; resume with one rank.
    for k in range(0, ActivationStore.open(two).n_chunks, 2):
        (two / "_progress" / f"chunk-{k:09d}.json").unlink()
    run_here(two)
    assert _array_files(one) == _array_files(two)


def test_cli_extract_builtin_and_refused_rerun(tmp_path, rng):
    g = tmp_path / "g.fa"
    write_fasta([("c1", "".join(rng.choice(list("ACGT"), 6000)))], g)
    runner = CliRunner()
    args = ["extract", "--genome", str(g), "--out", str(tmp_path / "a.zarr"), "--chunk-rows", "1024", "-q",
            "--max-tokens", "5000"]
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output
    s = ActivationStore.open(tmp_path / "a.zarr")
    assert s.n_rows == 5000 and s.attrs["model"]["name"] == "builtin"
    res = runner.invoke(cli, args[:-2] + ["--max-tokens", "4000"])
    assert res.exit_code == 2 and "different settings" in res.output and "max_tokens" in res.output
