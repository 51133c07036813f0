"""Extraction in local worker processes: byte-identical to one process, resumable, and a
failing worker stops the run with its error (the store stays resumable)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from genesae_fast import extract as extract_mod
from genesae_fast.cli import cli
from genesae_fast.errors import InputError
from genesae_fast.extract import extract_to_store
from genesae_fast.sequences import write_fasta
from genesae_fast.store import ActivationStore

sys.path.insert(0, str(Path(__file__).parent))
from test_extract import _array_files, _genome  # noqa: E402
from test_extract_model import TinyModel  # noqa: E402


class FailsInWorker(TinyModel):
    """Works in the process that made it, raises in any other (a spawned worker)."""

    def __init__(self):
        super().__init__()
        self.home = os.getpid()

    def forward_windows(self, token_ids, layer):
        if os.getpid() != self.home:
            raise RuntimeError("boom in a worker")
        return super().forward_windows(token_ids, layer)


@pytest.fixture
def genome(tmp_path, rng):
    return _genome(tmp_path / "g.fa", rng, lengths=(700, 0, 333, 1200, 5, 950))


@pytest.mark.parametrize("model", ["tiny", "builtin"])
def test_workers_give_the_same_bytes_as_one_process(tmp_path, genome, model):
    make = (lambda: TinyModel()) if model == "tiny" else (lambda: "builtin")
    one = Path(extract_to_store(genome, make(), 2, tmp_path / "one.zarr", chunk_rows=64, batch_size=4,
                                progress=False, workers=1))
    for n in (2, 3):
        many = Path(extract_to_store(genome, make(), 2, tmp_path / f"w{n}.zarr", chunk_rows=64, batch_size=4,
                                     progress=False, workers=n))
        assert _array_files(one) == _array_files(many), n
    # lose every third chunk, resume with another number of workers
    many = tmp_path / "w2.zarr"
    for k in range(0, ActivationStore.open(many).n_chunks, 3):
        (many / "_progress" / f"chunk-{k:09d}.json").unlink()
    extract_to_store(genome, make(), 2, many, chunk_rows=64, batch_size=4, progress=False, workers=3)
    assert _array_files(one) == _array_files(many)


def test_uneven_chunks_and_more_workers_than_chunks(tmp_path, rng):
    g = _genome(tmp_path / "g.fa", rng, lengths=(130,))
    one = Path(extract_to_store(g, TinyModel(), 1, tmp_path / "a.zarr", chunk_rows=50, progress=False, workers=1))
    many = Path(extract_to_store(g, TinyModel(), 1, tmp_path / "b.zarr", chunk_rows=50, progress=False, workers=8))
    assert _array_files(one) == _array_files(many)


def test_failing_worker_reports_its_error_and_the_store_resumes(tmp_path, genome):
    out = tmp_path / "s.zarr"
    with pytest.raises(RuntimeError, match="extraction worker failed: RuntimeError: boom in a worker"):
        extract_to_store(genome, FailsInWorker(), 2, out, chunk_rows=64, batch_size=4, progress=False, workers=2)
    with pytest.raises(InputError, match="extraction not finished"):
        ActivationStore.open(out)
    extract_to_store(genome, FailsInWorker(), 2, out, chunk_rows=64, batch_size=4, progress=False, workers=1)
    ref = Path(extract_to_store(genome, TinyModel(), 2, tmp_path / "ref.zarr", chunk_rows=64, batch_size=4,
                                progress=False, workers=1))
    got = ActivationStore.open(out)
    assert got.complete
    assert np.array_equal(got.read_rows(0, got.n_rows), ActivationStore.open(ref).read_rows(0, got.n_rows))


def test_default_workers_follow_job_size(monkeypatch):
    monkeypatch.setattr(extract_mod, "usable_cores", lambda: 16)
    n = extract_mod._n_workers
    assert n(None, remaining_rows=10, n_chunks=5, usable=True) == 1
    assert n(None, remaining_rows=3 * extract_mod.MIN_ROWS_PER_WORKER, n_chunks=50, usable=True) == 3
    assert n(None, remaining_rows=10**9, n_chunks=50, usable=True) == 16
    assert n(None, remaining_rows=10**9, n_chunks=4, usable=True) == 4
    assert n(5, remaining_rows=10, n_chunks=50, usable=True) == 5      # an explicit count is kept
    assert n(5, remaining_rows=10**9, n_chunks=50, usable=False) == 1  # GPU, torchrun, unpicklable model


def test_coordinates_written_in_pieces_equal_one_write(tmp_path, rng):
    from genesae_fast.store.writer import StoreWriter

    n = 1000
    cols = (np.repeat(np.arange(4, dtype=np.int32), 250), rng.integers(0, 10**6, n), rng.integers(0, 10**6, n),
            rng.integers(0, 5, n))
    whole = StoreWriter.create(tmp_path / "a.zarr", n_rows=n, d=4, config={"x": 1}, chunk_rows=64)
    whole.write_coordinates(*cols)
    pieces = StoreWriter.create(tmp_path / "b.zarr", n_rows=n, d=4, config={"x": 1}, chunk_rows=64)
    cuts = [0, 1, 63, 64, 200, 777, 999, n]
    pieces.write_coordinate_pieces(tuple(c[a:b] for c in cols) for a, b in zip(cuts[:-1], cuts[1:]))
    assert _array_files(tmp_path / "a.zarr") == _array_files(tmp_path / "b.zarr")
    short = StoreWriter.create(tmp_path / "c.zarr", n_rows=n, d=4, config={"x": 1}, chunk_rows=64)
    with pytest.raises(ValueError, match="999 rows given, 1000 expected"):
        short.write_coordinate_pieces([tuple(c[:999] for c in cols)])


def test_cli_extract_workers_option(tmp_path, rng):
    g = tmp_path / "g.fa"
    write_fasta([("c1", "".join(rng.choice(list("ACGT"), 3000)))], g)
    args = ["extract", "--genome", str(g), "--chunk-rows", "512", "-q"]
    r1 = CliRunner().invoke(cli, args + ["--out", str(tmp_path / "a.zarr"), "--workers", "1"])
    r2 = CliRunner().invoke(cli, args + ["--out", str(tmp_path / "b.zarr"), "--workers", "2"])
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
    assert _array_files(tmp_path / "a.zarr") == _array_files(tmp_path / "b.zarr")
    r = CliRunner().invoke(cli, args + ["--out", str(tmp_path / "c.zarr"), "--workers", "0"])
    assert r.exit_code == 2 and "--workers" in r.output


@pytest.mark.parametrize("text", [
    ">a desc\nACGT\nacgtn\n>b\n\n>c\nNNNN\r\nAC\r\n",
    "\n\n>x\nRYKM\n>y\n",
    ">only\n" + "ACGT" * 1000 + "\n",
    ">a\rAC\rGT\r>b\rTT\r",            # CR line endings: one chunk, still parsed right
])
@pytest.mark.parametrize("gz", [False, True])
def test_stream_records_equals_read_fasta(tmp_path, text, gz):
    import gzip

    from genesae_fast.sequences import read_fasta

    path = tmp_path / ("g.fa.gz" if gz else "g.fa")
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    want = read_fasta(path)
    got = list(extract_mod.stream_records(path))
    assert [(r.name, r.description, r.sequence, r.softmask.tolist()) for r in got] == \
           [(r.name, r.description, r.sequence, r.softmask.tolist()) for r in want]


def test_stream_records_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="missing.fa"):
        list(extract_mod.stream_records(tmp_path / "missing.fa"))
    bad = tmp_path / "bad.fa.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(InputError, match="bad.fa.gz"):
        list(extract_mod.stream_records(bad))
