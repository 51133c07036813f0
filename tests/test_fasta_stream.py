"""genesae_fast.fasta_stream: pieces of a FASTA file against read_fasta (the whole-file parser).

Fuzzed: any bytes from a FASTA-like alphabet, cut into pieces of any size, give the same
records (names and codes) as read_fasta, or the same one-line error.
"""
from __future__ import annotations

import gzip
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genesae_fast.errors import InputError
from genesae_fast.fasta_stream import ReadAhead, iter_pieces
from genesae_fast.sequences import read_fasta

ALPHABET = list(b">ACGTNacgtnRY \t\r\n;-x!\x00") + [ord(">")] * 3 + [ord("\n")] * 6


def streamed(path, piece_bytes, depth=None):
    """(names, codes per record) from the pieces, or the InputError message; with ``depth``
    the pieces come from a ReadAhead thread holding up to that many."""
    names, codes = [], []
    try:
        pieces = iter_pieces(path, piece_bytes) if depth is None else ReadAhead(path, piece_bytes, depth)
        for p in pieces:
            if p.first:
                assert p.record == len(names)
                names.append(p.name)
                codes.append([p.codes])
            else:
                assert p.record == len(names) - 1
                assert p.codes.size > 0
                codes[-1].append(p.codes)
    except InputError as exc:
        return str(exc)
    return names, [np.concatenate(c) for c in codes]


def whole(path):
    try:
        recs = read_fasta(path)
    except InputError as exc:
        return str(exc)
    return [r.name for r in recs], [r.codes for r in recs]


def same(a, b) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return a[0] == b[0] and len(a[1]) == len(b[1]) and all(np.array_equal(x, y) for x, y in zip(a[1], b[1], strict=False))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.lists(st.sampled_from(ALPHABET), max_size=300).map(bytes),
       piece_bytes=st.sampled_from([1, 2, 3, 5, 16, 1 << 20]), gz=st.booleans(),
       depth=st.sampled_from([None, 1, 3]))
def test_pieces_equal_whole_file_parse(tmp_path, data, piece_bytes, gz, depth):
    path = tmp_path / ("f.fa.gz" if gz else "f.fa")
    path.write_bytes(gzip.compress(data) if gz else data)
    assert same(streamed(path, piece_bytes, depth), whole(path))


@pytest.mark.parametrize("text", [
    b">a desc\nACGT\r\nAC\r\n>b\n\n>c\nNNac\n",
    b";comment\n\n>x\nAC GT\n-A\n",
    b"\n\n\n",
    b"",
    b"ACGT\n>late\nAC\n",
    b"ACGT\nACGT\n",
    b">a\rAC\rGT\r>b\rTT",
])
@pytest.mark.parametrize("piece_bytes", [1, 4, 1 << 20])
def test_edge_cases(tmp_path, text, piece_bytes):
    path = tmp_path / "f.fa"
    path.write_bytes(text)
    assert same(streamed(path, piece_bytes), whole(path))


def test_real_genome_in_pieces():
    from genesae_fast.data import genome_path

    assert same(streamed(genome_path(), 100_003), whole(genome_path()))


def test_file_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        list(iter_pieces(tmp_path / "missing.fa"))
    with pytest.raises(InputError, match="is a directory"):
        list(iter_pieces(tmp_path))
    bad = tmp_path / "trunc.fa.gz"
    bad.write_bytes(gzip.compress(b">a\n" + b"ACGT" * 10_000)[:-20])
    with pytest.raises(InputError, match="corrupt or truncated gzip data"):
        list(iter_pieces(bad))


def test_read_ahead_equals_pieces_and_stops_its_thread(tmp_path):
    from genesae_fast.data import genome_path

    assert same(streamed(genome_path(), 50_000, depth=4), whole(genome_path()))
    before = threading.active_count()
    reader = ReadAhead(genome_path(), 10_000, depth=2)
    first = next(iter(reader))
    assert first.first and first.record == 0
    reader.close()  # the consumer gave up early: the thread, blocked on a full queue, ends
    assert threading.active_count() == before
    with pytest.raises(RuntimeError, match="single use"):
        next(iter(reader))


def test_read_ahead_errors_come_where_the_bad_piece_would(tmp_path):
    bad = tmp_path / "bad.fa"
    bad.write_bytes(b">a\n" + b"ACGT\n" * 1000 + b"AC!T\n")
    before = threading.active_count()
    got = []

    def consume():
        for piece in ReadAhead(bad, 100, depth=2):
            got.append(piece.codes.size)

    with pytest.raises(InputError, match="line 1002: invalid character '!'"):
        consume()
    assert sum(got) > 0  # the good pieces before it were handed over first
    with pytest.raises(InputError, match="no such file"):
        list(ReadAhead(tmp_path / "missing.fa"))
    assert threading.active_count() == before
