"""k-mer counting against a plain-Python reference."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genesae_fast import data
from genesae_fast.errors import InputError
from genesae_fast.kmers import count_kmers, pack, unpack, write_tsv
from genesae_fast.sequences import parse_fasta_bytes, read_fasta

COMP = str.maketrans("ACGT", "TGCA")


def reference_counts(seqs: list[str], k: int, canonical: bool) -> Counter:
    """Count every window of k ACGT letters (case-insensitive) in each sequence."""
    counts: Counter = Counter()
    for seq in seqs:
        seq = seq.upper()
        for i in range(len(seq) - k + 1):
            word = seq[i : i + k]
            if set(word) <= set("ACGT"):
                if canonical:
                    word = min(word, word.translate(COMP)[::-1])
                counts[word] += 1
    return counts


def as_counter(kmers: np.ndarray, counts: np.ndarray, k: int) -> Counter:
    return Counter(dict(zip(unpack(kmers, k), counts.tolist(), strict=True)))


def random_sequences(rng, n_records=5, max_len=400, n_rate=0.02):
    seqs = []
    for _ in range(n_records):
        length = int(rng.integers(0, max_len))
        letters = np.array(list("ACGTacgt"))[rng.integers(0, 8, length)]
        letters[rng.random(length) < n_rate] = "N"
        seqs.append("".join(letters))
    return seqs


def records_of(seqs):
    text = "".join(f">r{i}\n{s}\n" for i, s in enumerate(seqs)).encode()
    return parse_fasta_bytes(text, "mem")


@pytest.mark.parametrize("k", range(1, 32))
@pytest.mark.parametrize("canonical", [False, True])
def test_every_k_matches_reference(rng, k, canonical):
    # Short records keep the reference fast; the low-complexity record forces repeats.
    seqs = random_sequences(rng) + ["ACGT" * 30 + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]
    expected = reference_counts(seqs, k, canonical)
    kmers, counts = count_kmers(records_of(seqs), k, canonical=canonical)
    assert np.all(kmers[1:] > kmers[:-1]), "rows must be sorted and unique"
    assert as_counter(kmers, counts, k) == expected


@pytest.mark.parametrize("method", ["dense", "partition"])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("canonical", [False, True])
def test_counters_and_threads_agree_on_real_sequence(method, threads, canonical):
    genome = read_fasta(data.genome_path())[0].codes[:300_000]
    # Long enough that every thread gets several segments, with record boundaries inside.
    pieces = [genome[:100_003], genome[100_003:230_000], genome[230_000:]]
    base_k, base_c = count_kmers(pieces, 9, canonical=canonical, method="dense", threads=1)
    k_, c_ = count_kmers(pieces, 9, canonical=canonical, method=method, threads=threads)
    np.testing.assert_array_equal(k_, base_k)
    np.testing.assert_array_equal(c_, base_c)
    assert int(base_c.sum()) == sum(len(p) - 8 for p in pieces)


def test_min_count_filters():
    recs = records_of(["AAAAAC", "AAC"])
    kmers, counts = count_kmers(recs, 2, min_count=2)
    assert dict(zip(unpack(kmers, 2), counts.tolist(), strict=True)) == {"AA": 5, "AC": 2}


@settings(max_examples=40, deadline=None)
@given(seqs=st.lists(st.text("ACGTNacgtn", max_size=120), min_size=1, max_size=4), k=st.integers(1, 31),
       canonical=st.booleans(), threads=st.integers(1, 3))
def test_property_matches_reference(seqs, k, canonical, threads):
    kmers, counts = count_kmers(records_of(seqs), k, canonical=canonical, threads=threads, method="partition")
    assert as_counter(kmers, counts, k) == reference_counts(seqs, k, canonical)


def test_pack_unpack_round_trip():
    for word in ["A", "T", "ACGTTGCA", "T" * 31]:
        assert unpack(pack(word), len(word)) == word


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"k": 0}, "k must be between 1 and 31"),
    ({"k": 32}, "k must be between 1 and 31"),
    ({"k": 5, "threads": 0}, "threads must be at least 1"),
    ({"k": 5, "min_count": 0}, "min-count must be at least 1"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(InputError, match=message):
        count_kmers(records_of(["ACGT"]), **kwargs)


def test_tsv_output(tmp_path):
    kmers, counts = count_kmers(records_of(["ACGTAC"]), 3)
    out = tmp_path / "k.tsv"
    write_tsv(kmers, counts, 3, out)
    assert out.read_text() == "kmer\tcount\nACG\t1\nCGT\t1\nGTA\t1\nTAC\t1\n"


# --- memory budget: spilled partitions give the same counts -----------------------------

# Working-memory sizes (bytes for the counter alone): 16 bytes hold one k-mer, so the small
# ones force every bucket to spill and be split again down to single k-mers.
WORK_SIZES = [16, 160, 4096, 1 << 20]


@pytest.mark.parametrize("k", [1, 3, 4, 5, 9, 13, 14, 21, 31])
@pytest.mark.parametrize("canonical", [False, True])
@pytest.mark.parametrize("min_count", [1, 3])
@pytest.mark.parametrize("threads", [1, 3])
def test_budgeted_equals_unbudgeted_and_reference(rng, k, canonical, min_count, threads):
    seqs = random_sequences(rng, n_records=4, max_len=300) + ["ACGT" * 20 + "A" * 60 + "CG" * 30]
    expected = Counter({w: c for w, c in reference_counts(seqs, k, canonical).items() if c >= min_count})
    recs = records_of(seqs)
    free_k, free_c = count_kmers(recs, k, canonical=canonical, min_count=min_count, threads=threads)
    assert as_counter(free_k, free_c, k) == expected
    for work in WORK_SIZES:
        km, ct = count_kmers(recs, k, canonical=canonical, min_count=min_count, threads=threads, working_memory=work)
        np.testing.assert_array_equal(km, free_k)
        np.testing.assert_array_equal(ct, free_c)


@settings(max_examples=40, deadline=None)
@given(seqs=st.lists(st.text("ACGTNacgt", max_size=200), min_size=1, max_size=4), k=st.integers(1, 31),
       canonical=st.booleans(), threads=st.integers(1, 3), min_count=st.integers(1, 4),
       work=st.sampled_from(WORK_SIZES))
def test_property_budgeted_matches_reference(seqs, k, canonical, threads, min_count, work):
    km, ct = count_kmers(records_of(seqs), k, canonical=canonical, min_count=min_count, threads=threads,
                         working_memory=work)
    expected = Counter({w: c for w, c in reference_counts(seqs, k, canonical).items() if c >= min_count})
    assert as_counter(km, ct, k) == expected


@pytest.mark.parametrize("k", [11, 21])
@pytest.mark.parametrize("threads", [1, 2])
def test_spilled_genome_equals_in_memory(tmp_path, k, threads):
    # 400 kbp of the genome in 3 records, 1 MiB of working memory: ~25 spilled batches.
    genome = read_fasta(data.genome_path())[0].codes[:400_000]
    pieces = [genome[:150_001], genome[150_001:300_000], genome[300_000:]]
    base_k, base_c = count_kmers(pieces, k, canonical=True, threads=threads)
    km, ct = count_kmers(pieces, k, canonical=True, threads=threads, working_memory=1 << 20, spill_dir=tmp_path)
    np.testing.assert_array_equal(km, base_k)
    np.testing.assert_array_equal(ct, base_c)
    assert list(tmp_path.iterdir()) == [], "spill files must be removed"


def test_one_repeated_kmer_over_the_budget():
    # 5,000 copies of one k-mer in a budget of 2 k-mers: counted without loading them.
    km, ct = count_kmers(records_of(["A" * 5020]), 21, working_memory=32)
    assert unpack(km, 21) == ["A" * 21]
    assert ct.tolist() == [5000]


def test_streamed_rows_come_in_order_and_pieces():
    from genesae_fast.kmers import count_kmers_into

    genome = read_fasta(data.genome_path())[0].codes[:300_000]
    pieces: list[np.ndarray] = []
    rows = count_kmers_into([genome], 21, lambda km, ct: pieces.append(km.copy()), working_memory=1 << 20)
    joined = np.concatenate(pieces)
    assert rows == len(joined)
    assert len(pieces) > 1
    assert np.all(joined[1:] > joined[:-1])
    np.testing.assert_array_equal(joined, count_kmers([genome], 21)[0])


def test_dense_and_auto_agree_under_a_budget():
    genome = read_fasta(data.genome_path())[0].codes[:200_000]
    base = count_kmers([genome], 9, canonical=True)
    # 4^9 * 4 bytes = 1 MiB table fits 2 MiB; 200k k-mers * 16 bytes do not: auto picks dense.
    for method in ["auto", "dense", "partition"]:
        km, ct = count_kmers([genome], 9, canonical=True, method=method, working_memory=2 << 20, threads=2)
        np.testing.assert_array_equal(km, base[0])
        np.testing.assert_array_equal(ct, base[1])


@pytest.mark.parametrize(("text", "size"), [("300M", 300 << 20), ("2g", 2 << 30), ("1.5K", 1536), ("4096", 4096),
                                         ("64MiB", 64 << 20), ("10 MB", 10 << 20)])
def test_parse_memory(text, size):
    from genesae_fast.kmers import parse_memory

    assert parse_memory(text) == size


@pytest.mark.parametrize("text", ["", "lots", "-5M", "0", "3X", "nan"])
def test_parse_memory_refuses(text):
    from genesae_fast.kmers import parse_memory

    with pytest.raises(InputError, match="--memory"):
        parse_memory(text)


def test_bad_spill_folder_is_one_line(tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    with pytest.raises(InputError, match="--tmp-dir .*file: no such folder"):
        count_kmers(records_of(["ACGTACGT"]), 3, spill_dir=not_a_folder)


def test_budget_below_the_process_size_is_refused():
    with pytest.raises(InputError, match="--memory 1M: too small"):
        count_kmers(records_of(["ACGTACGT"]), 3, memory="1M")


# --- native code that cannot kill Python ------------------------------------------------


def test_worker_exception_becomes_python_exception():
    from genesae_fast import _native

    genome = read_fasta(data.genome_path())[0].codes
    pieces = [genome[i : i + 200_000] for i in range(0, 2_000_000, 200_000)]
    _native._set_kmer_fault(5)
    try:
        with pytest.raises(MemoryError):
            count_kmers(pieces, 15, threads=2, method="partition")
    finally:
        _native._set_kmer_fault(-1)
    # The process and the counter are fine afterwards.
    km, ct = count_kmers(pieces[:1], 15, threads=2)
    assert int(ct.sum()) == 200_000 - 14


@pytest.mark.parametrize("threads", [1, 2])
def test_dense_uint64_cells_equal_uint32_cells(threads):
    # Inputs of 2^32 bases and more are tallied in uint64 cells; lower the switch to test them.
    from genesae_fast import _native

    genome = read_fasta(data.genome_path())[0].codes[:200_000]
    narrow = count_kmers([genome], 8, canonical=True, method="dense", threads=threads)
    _native._set_dense_wide_from(1)
    try:
        wide = count_kmers([genome], 8, canonical=True, method="dense", threads=threads)
    finally:
        _native._set_dense_wide_from(2**32 - 1)
    np.testing.assert_array_equal(wide[0], narrow[0])
    np.testing.assert_array_equal(wide[1], narrow[1])
    assert int(wide[1].sum()) == 200_000 - 7


def test_huge_thread_count_is_capped():
    recs = records_of(["ACGTTGCAAC" * 50])
    base = count_kmers(recs, 5)
    for method in ["partition", "dense"]:
        km, ct = count_kmers(recs, 5, threads=100_000, method=method)
        np.testing.assert_array_equal(km, base[0])
        np.testing.assert_array_equal(ct, base[1])


def test_min_count_at_the_uint64_limit():
    km, ct = count_kmers(records_of(["ACGTACGT"]), 3, min_count=2**64 - 1)
    assert len(km) == 0
    assert len(ct) == 0
    with pytest.raises(InputError, match="min-count"):
        count_kmers(records_of(["ACGT"]), 3, min_count=2**64)


# --- the command ------------------------------------------------------------------------


def run_cli(args):
    from click.testing import CliRunner

    from genesae_fast.cli import cli

    return CliRunner().invoke(cli, args)


@pytest.fixture(scope="module")
def small_genome(tmp_path_factory):
    path = tmp_path_factory.mktemp("g") / "g.fa"
    codes = read_fasta(data.genome_path())[0].codes[:120_000]
    from genesae_fast.sequences import decode

    seq = decode(codes)
    path.write_text(f">a\n{seq[:70_000]}\n>b\n{seq[70_000:]}\n")
    return path


def test_cli_budgeted_output_equals_unbudgeted(tmp_path, small_genome):
    free, tight = tmp_path / "free.tsv", tmp_path / "tight.tsv"
    r1 = run_cli(["kmers", "--genome", str(small_genome), "-k", "17", "--canonical", "-o", str(free)])
    r2 = run_cli(["kmers", "--genome", str(small_genome), "-k", "17", "--canonical", "--memory", "8G",
                  "--threads", "100000", "-o", str(tight)])
    assert r1.exit_code == 0, r1.output
    assert r2.exit_code == 0, r2.output
    assert free.read_bytes() == tight.read_bytes()
    recs = read_fasta(small_genome)
    km, ct = count_kmers(recs, 17, canonical=True)
    lines = free.read_text().splitlines()
    assert lines[0] == "kmer\tcount"
    assert len(lines) == len(km) + 1
    assert lines[1] == f"{unpack(int(km[0]), 17)}\t{ct[0]}"


@pytest.mark.parametrize(("args", "message"), [
    (["--min-count", "99999999999999999999"], "--min-count"),
    (["-o", "/nonexistent-folder/x.tsv"], "does not exist"),
    (["--memory", "lots"], "--memory"),
    (["--memory", "1M"], "too small"),
])
def test_cli_bad_options_give_one_line(small_genome, args, message):
    result = run_cli(["kmers", "--genome", str(small_genome), "-k", "5", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("Error")]) == 1


def test_cli_writes_through_a_fifo(tmp_path, small_genome):
    import os
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    result = run_cli(["kmers", "--genome", str(small_genome), "-k", "4", "-o", str(fifo)])
    reader.join(timeout=60)
    assert result.exit_code == 0, result.output
    assert fifo.is_fifo(), "the FIFO must not be replaced by a regular file"
    km, ct = count_kmers(read_fasta(small_genome), 4)
    assert got[0].decode().splitlines()[1:] == [f"{w}\t{c}" for w, c in zip(unpack(km, 4), ct.tolist(), strict=True)]


def numpy_counts(codes: np.ndarray, k: int, canonical: bool):
    """Packed k-mers and counts by numpy: every window's 2-bit code, windows with a non-ACGT
    base dropped, then np.unique."""
    windows = np.lib.stride_tricks.sliding_window_view(codes.astype(np.uint64), k)
    windows = windows[(windows < 4).all(axis=1)]
    shifts = np.arange(2 * (k - 1), -1, -2, dtype=np.uint64)
    fwd = (windows << shifts).sum(axis=1, dtype=np.uint64)
    if canonical:
        rev = ((np.uint64(3) - windows[:, ::-1]) << shifts).sum(axis=1, dtype=np.uint64)
        fwd = np.minimum(fwd, rev)
    return np.unique(fwd, return_counts=True)


# k = 9, 11: buckets tallied in a table; 12, 13, 16, 20: 16, 18, 24, 32 bits under the bucket,
# sorted as uint32 keys in 2 or 3 passes
@pytest.mark.parametrize("k", [9, 11, 12, 13, 16, 20])
@pytest.mark.parametrize("min_count", [1, 2])
def test_large_blocks_match_numpy(k, min_count):
    """Buckets of thousands of k-mers (tallied or sorted as 32-bit low keys) against numpy's unique."""
    codes = read_fasta(data.genome_path())[0].codes[:400_000].copy()
    codes[1000:1010] = 4  # an N run
    ref_k, ref_c = numpy_counts(codes, k, canonical=True)
    keep = ref_c >= min_count
    km, ct = count_kmers([codes], k, canonical=True, min_count=min_count, method="partition")
    np.testing.assert_array_equal(km, ref_k[keep])
    np.testing.assert_array_equal(ct, ref_c[keep].astype(np.uint64))
