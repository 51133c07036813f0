"""FASTA decoding: edge cases, bad input, and a property-based round trip."""
from __future__ import annotations

import gzip

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genesae_fast import data
from genesae_fast.errors import InputError
from genesae_fast.sequences import (
    decode,
    encode,
    parse_fasta_bytes,
    read_fasta,
    reverse_complement,
    summarize,
    write_fasta,
)

CODE = {"A": 0, "C": 1, "G": 2, "T": 3}


def reference_codes(seq: str) -> np.ndarray:
    """Plain-Python model of the C++ encoder."""
    return np.array([CODE.get(c.upper(), 4) for c in seq], dtype=np.uint8)


def bgzf_compress(data: bytes, block: int = 1000) -> bytes:
    """BGZF-like output: many independent gzip members, each a small block."""
    out = b""
    for i in range(0, len(data), block):
        out += gzip.compress(data[i : i + block])
    return out + gzip.compress(b"")


def test_bundled_genome():
    records = read_fasta(data.genome_path())
    assert [r.name for r in records] == ["NZ_LN831026.1"]
    assert len(records[0]) == 2_463_666
    assert records[0].description.startswith("Corynebacterium diphtheriae strain NCTC11397")
    assert records[0].codes.max() <= 3  # a finished genome: no N


def test_edge_cases_of_the_format():
    text = (
        b">r1 first record\r\nACGTacgtNNnn\r\nRYKM-\r\n"
        b">empty\n"
        b"\n"
        b">r3\rAC GT\tA\r"
        b";comment line\n"
        b">r4   spaced   description  \nttttt"
    )
    recs = parse_fasta_bytes(text, "mem")
    assert [r.name for r in recs] == ["r1", "empty", "r3", "r4"]
    assert recs[0].description == "first record"
    assert recs[3].description == "spaced   description"
    np.testing.assert_array_equal(recs[0].codes, reference_codes("ACGTacgtNNnnRYKM-"))
    assert recs[0].softmask.tolist() == [False] * 4 + [True] * 4 + [False] * 2 + [True] * 2 + [False] * 5
    assert len(recs[1]) == 0
    assert recs[1].softmask.dtype == bool
    np.testing.assert_array_equal(recs[2].codes, reference_codes("ACGTA"))
    assert recs[3].softmask.all()
    assert recs[3].sequence == "TTTTT"


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        (b">ok\nACGT\nAC@@@GT\n", 3, "invalid character '@'"),
        (b">ok\r\nACGT\r\nAC1T\r\n", 3, "invalid character '1'"),
        (b">ok\nAC*T\n", 2, "invalid character '*'"),
        (b"ACGT\n>late\nACGT\n", 1, "before the first '>' header"),
        (b"hello world\nthis is text\n", 1, "not a FASTA file"),
        (b"", 1, "not a FASTA file"),
        (b">ok\nAC\x00GT\n", 2, "binary"),
    ],
)
def test_bad_input_names_file_line_and_problem(text, line, problem):
    with pytest.raises(InputError) as err:
        parse_fasta_bytes(text, "bad.fa")
    message = str(err.value)
    assert message.startswith(f"bad.fa: line {line}: ")
    assert problem in message
    assert "\n" not in message


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_fasta(tmp_path / "absent.fa")
    broken = tmp_path / "broken.fa.gz"
    broken.write_bytes(gzip.compress(b">a\nACGT\n" * 100)[:-20])
    with pytest.raises(InputError, match="corrupt or truncated gzip"):
        read_fasta(broken)


def test_encode_decode_reverse_complement():
    codes = encode("acgTNRy")
    np.testing.assert_array_equal(codes, reference_codes("acgTNRy"))
    assert decode(codes) == "ACGTNNN"
    assert decode(reverse_complement(encode("AACGTN"))) == "NACGTT"


def test_summary():
    recs = parse_fasta_bytes(b">a\nGGccNN\n>b\nAT\n", "x")
    s = summarize(recs)
    assert s["records"] == 2
    assert s["total_bp"] == 8
    assert s["gc_fraction"] == pytest.approx(4 / 6)
    assert s["n_fraction"] == pytest.approx(2 / 8)
    assert s["softmasked_fraction"] == pytest.approx(2 / 8)


IUPAC = "ACGTNRYKMSWBDHVacgtnrykmswbdhv"
names = st.text("abcdefghijklmnopqrstuvwxyz0123456789_.|", min_size=1, max_size=12)
records_strategy = st.lists(
    st.tuples(names, st.text("abc xyz", max_size=10), st.text(IUPAC, max_size=300)), min_size=1, max_size=6
)


@settings(max_examples=60, deadline=None)
@given(
    records=records_strategy,
    width=st.integers(1, 80),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    compression=st.sampled_from(["none", "gzip", "bgzf"]),
)
def test_round_trip(tmp_path_factory, records, width, newline, compression):
    lines = []
    for name, desc, seq in records:
        desc = desc.strip()
        lines.append(f">{name}" + (f" {desc}" if desc else ""))
        lines += [seq[i : i + width] for i in range(0, len(seq), width)]
    raw = (newline.join(lines) + newline).encode()
    if compression == "gzip":
        raw = gzip.compress(raw)
    elif compression == "bgzf":
        raw = bgzf_compress(raw)
    path = tmp_path_factory.mktemp("fa") / "x.fa"
    path.write_bytes(raw)
    parsed = read_fasta(path)
    assert len(parsed) == len(records)
    for rec, (name, desc, seq) in zip(parsed, records, strict=True):
        assert rec.name == name
        assert rec.description == desc.strip()
        np.testing.assert_array_equal(rec.codes, reference_codes(seq))
        assert rec.softmask.tolist() == [c.islower() for c in seq]
    # write_fasta -> read_fasta is the identity on codes and soft-mask.
    out = path.with_suffix(".out.fa.gz")
    write_fasta(parsed, out, width=width)
    again = read_fasta(out)
    for a, b in zip(parsed, again, strict=True):
        assert (a.name, a.description) == (b.name, b.description)
        np.testing.assert_array_equal(a.codes, b.codes)
        np.testing.assert_array_equal(a.softmask, b.softmask)


# --- buffers: strided views are copied, wide items refused (never read out of bounds) ----


def test_encode_reversed_memoryview_large():
    raw = b"ACGT" * (1 << 22)
    codes = encode(memoryview(raw)[::-1])
    assert len(codes) == len(raw)
    np.testing.assert_array_equal(codes[:8], [3, 2, 1, 0, 3, 2, 1, 0])
    np.testing.assert_array_equal(np.bincount(codes), [1 << 22] * 4)


@pytest.mark.parametrize(("make", "expected"), [
    (lambda: np.frombuffer(b"ACGTACGT", np.uint8)[::2], "AGAG"),
    (lambda: np.frombuffer(b"ACGTACGT", np.uint8)[::-3], "TAC"),
    (lambda: memoryview(b"ACGTNacgt")[1::3], "CNG"),
    (lambda: np.frombuffer(b"ACGTACGT", np.int8)[1::2], "CTCT"),
    (lambda: np.array([b"a", b"C", b"t"], dtype="S1")[::-1], "TCA"),
    (lambda: np.frombuffer(b"ACGTTGCA", np.uint8).reshape(2, 4)[:, 1:3], "CGGC"),
    (lambda: bytearray(b"gattaca"), "GATTACA"),
    (lambda: memoryview(bytearray(b"GGCC")), "GGCC"),
])
def test_encode_strided_and_other_byte_buffers(make, expected):
    np.testing.assert_array_equal(encode(make()), reference_codes(expected))


def test_encode_small_strided_view_gives_every_other_base():
    assert encode(np.frombuffer(b"ACGTACGT", np.uint8)[::2]).tolist() == [0, 2, 0, 2]


@pytest.mark.parametrize(("value", "message"), [
    (np.array([65, 67], dtype=np.int32), "int32 array"),
    (np.array([65.0, 67.0]), "float64 array"),
    (memoryview(np.array([65, 67], dtype=np.int32)), "format 'i'"),
    ([65, 67], "got list"),
    (12, "got int"),
    (None, "got NoneType"),
])
def test_encode_refuses_non_byte_input(value, message):
    with pytest.raises(InputError, match=message) as err:
        encode(value)
    assert "\n" not in str(err.value)


def test_native_decoders_refuse_strided_and_wide_buffers():
    from genesae_fast import _native

    with pytest.raises(ValueError, match="C-contiguous"):
        _native.encode_bases(memoryview(b"ACGT")[::-1])
    with pytest.raises(ValueError, match="single bytes"):
        _native.encode_bases(np.zeros(4, dtype=np.int32))
    with pytest.raises(ValueError, match="C-contiguous"):
        _native.parse_fasta(memoryview(b">a\nACGT\n")[::2])


def test_parse_fasta_bytes_copies_strided_views():
    text = b">a\nACGTNN\n"
    recs = parse_fasta_bytes(np.frombuffer(text + text, np.uint8)[: len(text)][::1], "mem")
    assert recs[0].sequence == "ACGTNN"
    doubled = np.frombuffer(bytes(b for c in text for b in (c, 0)), np.uint8)[::2]
    assert parse_fasta_bytes(doubled, "mem")[0].sequence == "ACGTNN"
