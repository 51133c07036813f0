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
    return Counter(dict(zip(unpack(kmers, k), counts.tolist())))


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
    assert dict(zip(unpack(kmers, 2), counts.tolist())) == {"AA": 5, "AC": 2}


@settings(max_examples=40, deadline=None)
@given(seqs=st.lists(st.text("ACGTNacgtn", max_size=120), min_size=1, max_size=4), k=st.integers(1, 31),
       canonical=st.booleans(), threads=st.integers(1, 3))
def test_property_matches_reference(seqs, k, canonical, threads):
    kmers, counts = count_kmers(records_of(seqs), k, canonical=canonical, threads=threads, method="partition")
    assert as_counter(kmers, counts, k) == reference_counts(seqs, k, canonical)


def test_pack_unpack_round_trip():
    for word in ["A", "T", "ACGTTGCA", "T" * 31]:
        assert unpack(pack(word), len(word)) == word


@pytest.mark.parametrize("kwargs, message", [
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
