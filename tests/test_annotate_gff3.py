"""read_gff3 strictness (issue 14): strand, integer coordinates, CDS IDs per seqid and
strand, UTF-8; every refusal is one line naming the file and the line."""
from __future__ import annotations

import numpy as np
import pytest

from genesae_fast.annotate.genes import read_gff3
from genesae_fast.errors import InputError
from genesae_fast.sequences import Record


@pytest.fixture
def records():
    rng = np.random.default_rng(0)
    return [Record(n, "", rng.integers(0, 4, 500).astype(np.uint8), np.zeros(500, bool)) for n in ("c1", "c2")]


def _gff(tmp_path, *lines, raw: bytes | None = None):
    path = tmp_path / "g.gff3"
    path.write_bytes(raw if raw is not None else ("##gff-version 3\n" + "\n".join(lines) + "\n").encode())
    return path


def _cds(seqid="c1", start="11", end="40", strand="+", ident="a"):
    return f"{seqid}\tt\tCDS\t{start}\t{end}\t.\t{strand}\t0\tID={ident}"


@pytest.mark.parametrize("line, piece", [
    (_cds(strand="X"), "strand 'X' is not +, -, . or ?"),
    (_cds(strand=""), "strand '' is not"),
    (_cds(strand="+-"), "strand '+-'"),
    (_cds(strand="."), "CDS with strand '.' (unstranded); expected + or -"),
    (_cds(strand="?"), "CDS with strand '?' (unknown)"),
    ("c1\tt\tRBS\t5\t8\t.\t.\t.\tID=r", "RBS with strand '.'"),
    (_cds(start="1_0"), "start/end '1_0'/'40' are not integers"),
    (_cds(end="4_0"), "are not integers"),
    (_cds(start=" 11"), "are not integers"),
    (_cds(start="+11"), "are not integers"),
    (_cds(start="\u0661\u0661"), "are not integers"),  # Arabic-Indic digits: int() would take them
    (_cds(start="1e1"), "are not integers"),
    (_cds(start="0"), "outside"),
    (_cds(start="40", end="11"), "outside"),
])
def test_bad_lines_refused(tmp_path, records, line, piece):
    path = _gff(tmp_path, _cds(ident="ok"), line)
    with pytest.raises(InputError) as err:
        read_gff3(path, records)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{path}: line 3: ") and piece in msg, msg


def test_non_utf8_is_one_line(tmp_path, records):
    path = _gff(tmp_path, raw=b"##gff-version 3\n" + _cds().encode() + b"\nc1\tt\tCDS\t1\t9\t.\t+\t0\tID=\xff\xfe\n")
    with pytest.raises(InputError, match=r"line 3: not UTF-8 text") as err:
        read_gff3(path, records)
    assert "\n" not in str(err.value)


def test_same_id_is_not_merged_across_strands_or_seqids(tmp_path, records):
    path = _gff(tmp_path, _cds(start="11", end="40", strand="+"), _cds(start="101", end="130", strand="+"),
                _cds(start="201", end="230", strand="-"), _cds(seqid="c2", start="301", end="330", strand="+"))
    got = sorted((g.seq, g.start, g.end, g.strand) for g in read_gff3(path, records))
    assert got == [(0, 10, 130, 1), (0, 200, 230, -1), (1, 300, 330, 1)]


def test_line_separators_inside_attributes_do_not_split_lines(tmp_path, records):
    # str.splitlines() would also break at \x85, \u2028, \x1c ...: only \n, \r\n and \r end a line
    path = _gff(tmp_path, _cds() + ";Note=a\u2028b\x85c\x1cd")
    (g,) = read_gff3(path, records)
    assert (g.seq, g.start, g.end, g.strand) == (0, 10, 40, 1)
