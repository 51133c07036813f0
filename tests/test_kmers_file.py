"""k-mer counts of a FASTA file read in pieces (genesae_fast.kmers_file) against the whole-genome
counter and the plain-Python reference: the same rows whether the genome is held or its k-mers
spill to bucket files a stretch at a time, whatever the budget, piece size and threads."""
from __future__ import annotations

import gzip
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genesae_fast import data
from genesae_fast.errors import InputError
from genesae_fast.kmers import count_kmers
from genesae_fast.kmers_file import count_kmers_file, write_kmers_file
from genesae_fast.sequences import read_fasta

from test_kmers import as_counter, random_sequences, reference_counts


def file_counts(path, k, **options):
    kmers, counts = [], []
    rows = count_kmers_file(path, k, lambda km, ct: (kmers.append(km.copy()), counts.append(ct.copy())), **options)
    kmers = np.concatenate(kmers) if kmers else np.zeros(0, np.uint64)
    counts = np.concatenate(counts) if counts else np.zeros(0, np.uint64)
    assert rows == kmers.size
    assert np.all(kmers[1:] > kmers[:-1]), "rows must come sorted and unique"
    return kmers, counts


def write_records(path, seqs, gz=False):
    text = "".join(f">r{i} desc\n{s}\n" for i, s in enumerate(seqs)).encode()
    path.write_bytes(gzip.compress(text) if gz else text)
    return path


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), k=st.sampled_from([1, 2, 5, 11, 13, 17, 31]), canonical=st.booleans(),
       min_count=st.sampled_from([1, 2]), threads=st.sampled_from([1, 2]),
       work=st.sampled_from([None, 40, 400, 4000, 1 << 24]), piece_bytes=st.sampled_from([7, 64, 1 << 20]),
       gz=st.booleans())
def test_streamed_counts_equal_reference(tmp_path, seed, k, canonical, min_count, threads, work, piece_bytes, gz):
    """Tiny budgets hold a few dozen bases at a time: records cut into many stretches."""
    rng = np.random.default_rng(seed)
    seqs = random_sequences(rng, n_records=4, max_len=300) + ["ACGT" * 20 + "A" * 40]
    folder = Path(tempfile.mkdtemp(dir=tmp_path))  # one per example
    path = write_records(folder / ("g.fa.gz" if gz else "g.fa"), seqs, gz)
    km, ct = file_counts(path, k, canonical=canonical, min_count=min_count, threads=threads, working_memory=work,
                         piece_bytes=piece_bytes, spill_dir=folder)
    expected = reference_counts(seqs, k, canonical)
    assert as_counter(km, ct, k) == {w: c for w, c in expected.items() if c >= min_count}
    assert [p.name for p in folder.iterdir()] == [path.name]  # spill folders removed


@pytest.mark.parametrize("k", [11, 21])
@pytest.mark.parametrize("work", [None, 4 << 20, 64 << 20])
def test_genome_streamed_equals_in_memory(k, work):
    """The bundled genome: held (64 MiB) or spilled in stretches of about 230 kbp (4 MiB)."""
    ref = count_kmers(read_fasta(data.genome_path()), k, canonical=True, threads=2)
    km, ct = file_counts(data.genome_path(), k, canonical=True, threads=2, working_memory=work, piece_bytes=100_003)
    assert np.array_equal(km, ref[0]) and np.array_equal(ct, ref[1])


def test_bad_input_is_one_line(tmp_path):
    bad = tmp_path / "bad.fa"
    bad.write_bytes(b">a\n" + b"ACGT\n" * 100 + b"AC!T\n")
    with pytest.raises(InputError, match=r"bad.fa: line 102: invalid character '!'"):
        file_counts(bad, 5, working_memory=100, piece_bytes=50, spill_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.fa"]
    with pytest.raises(InputError, match="--tmp-dir .*: no such folder"):
        file_counts(data.genome_path(), 5, working_memory=100, spill_dir=tmp_path / "missing")
    with pytest.raises(InputError, match="k must be between 1 and 31"):
        file_counts(bad, 32)
    with pytest.raises(InputError, match="no such file"):
        write_kmers_file(tmp_path / "missing.fa", 5, tmp_path / "out.tsv")
    assert not (tmp_path / "out.tsv").exists()


def test_written_rows_and_a_header_even_without_rows(tmp_path):
    path = write_records(tmp_path / "g.fa", ["ACGTAC", "NN", "AC"])
    assert write_kmers_file(path, 3, tmp_path / "a.tsv", working_memory=1) == 4  # spilled
    assert (tmp_path / "a.tsv").read_text() == "kmer\tcount\nACG\t1\nCGT\t1\nGTA\t1\nTAC\t1\n"
    assert write_kmers_file(path, 7, tmp_path / "b.tsv") == 0
    assert (tmp_path / "b.tsv").read_text() == "kmer\tcount\n"


_PEAK = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
         "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


@pytest.mark.skipif(sys.platform != "linux", reason="peak RSS from getrusage is in KiB on Linux only")
def test_cli_budget_covers_the_genome(tmp_path):
    """12 Mbp under --memory 100M: read_fasta alone would hold 24 MB of it, the k-mers 190 MB;
    the command's peak RSS stays under the budget and its rows equal the unbudgeted ones."""
    genome = tmp_path / "g.fa"
    rng = np.random.default_rng(3)
    seq = np.frombuffer(b"ACGT", np.uint8)[rng.integers(0, 4, 12_000_000)].tobytes()
    genome.write_bytes(b">a\n" + b"\n".join(seq[i:i + 1_000_000] for i in range(0, len(seq), 1_000_000)) + b"\n")
    outs, peaks = [], []
    for memory in ("100M", None):
        out = tmp_path / f"out{memory}.tsv"
        cmd = [sys.executable, "-c", "from genesae_fast.cli import main; main()", "kmers", "--genome", str(genome),
               "-k", "13", "--threads", "2", "-o", str(out)] + (["--memory", memory] if memory else [])
        peaks.append(int(subprocess.run([sys.executable, "-c", _PEAK, *cmd], check=True, capture_output=True,
                                        text=True).stdout))
        outs.append(out.read_bytes())
    assert peaks[0] < 100 << 10, f"peak RSS {peaks[0] / 1024:.0f} MiB over the 100M budget"
    assert outs[0] == outs[1]
