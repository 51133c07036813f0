"""genesae_fast.tracks: BGZF+tabix BED, bigWig and bedGraph written block by block.

The BED output is read back three ways: as gzip (BGZF is multi-member gzip), by a reference
reader written here from the SAM/tabix specification (bins, linear index, virtual offsets),
and by htslib through pysam when it is installed; region queries are compared with a
brute-force filter of the rows.
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genesae_fast.errors import InputError
from genesae_fast.tracks import (
    BGZF_EOF,
    BedGraphWriter,
    BigWigWriter,
    SortedBedWriter,
    bgzf_blocks,
    reg2bin,
)

CHROMS = [("chrA", 200_000), ("chrB", 1_000_000), ("chrC", 5_000)]


def _rows(rng, n_per_chrom=(300, 900, 20), long_frac=0.02):
    """Sorted random BED rows: mostly short (motif-like), some long; a few zero-length."""
    rows = []
    for (name, length), n in zip(CHROMS, n_per_chrom):
        starts = np.sort(rng.integers(0, length - 1, n))
        widths = rng.integers(0, 30, n)
        longs = rng.random(n) < long_frac
        widths[longs] = rng.integers(10_000, 200_000, longs.sum())
        ends = np.minimum(starts + widths, length)
        for s, e in zip(starts.tolist(), ends.tolist()):
            rows.append((name, s, e))
    return rows


def _write_blocks(path, rows, block, **kw):
    with SortedBedWriter(path, [c for c, _ in CHROMS], **kw) as w:
        for i in range(0, len(rows), block):
            part = rows[i:i + block]
            w.write([r[0] for r in part], [r[1] for r in part], [r[2] for r in part],
                    [f"m{j}" for j in range(i, i + len(part))], np.arange(i, i + len(part)))
    return w


# -- a reference tabix reader, from the specification --------------------------------------------
def _bgzf_members(raw: bytes):
    """(compressed offset, uncompressed bytes) of every BGZF member, checking each header."""
    pos, out = 0, []
    while pos < len(raw):
        assert raw[pos:pos + 4] == b"\x1f\x8b\x08\x04"
        xlen = struct.unpack_from("<H", raw, pos + 10)[0]
        assert raw[pos + 12:pos + 14] == b"BC"
        bsize = struct.unpack_from("<H", raw, pos + 16)[0] + 1
        data = zlib.decompress(raw[pos + 12 + xlen:pos + bsize - 8], -15)
        crc, isize = struct.unpack_from("<II", raw, pos + bsize - 8)
        assert crc == zlib.crc32(data) and isize == len(data) <= 0xFF00
        out.append((pos, data))
        pos += bsize
    return out


def _read_at(members, voff_beg, voff_end):
    """Uncompressed bytes between two virtual offsets."""
    by_off = {off: data for off, data in members}
    offs = [off for off, _ in members]
    out = bytearray()
    c, u = voff_beg >> 16, voff_beg & 0xFFFF
    i = offs.index(c)
    while (offs[i] << 16) | u < voff_end:
        data = by_off[offs[i]]
        stop = (voff_end & 0xFFFF) if offs[i] == voff_end >> 16 else len(data)
        out += data[u:stop]
        i, u = i + 1, 0
        if i == len(offs):
            break
    return bytes(out)


def _parse_tbi(path):
    raw = b"".join(d for _, d in _bgzf_members(Path(path).read_bytes()))
    magic, n_ref, fmt, cs, cb, ce, meta, skip, l_nm = struct.unpack_from("<4s8i", raw, 0)
    assert magic == b"TBI\x01" and (fmt, cs, cb, ce, meta, skip) == (0x10000, 1, 2, 3, ord("#"), 0)
    pos = 36
    names = raw[pos:pos + l_nm].split(b"\0")[:-1]
    pos += l_nm
    refs = []
    for _ in range(n_ref):
        (n_bin,) = struct.unpack_from("<i", raw, pos)
        pos += 4
        bins = {}
        for _ in range(n_bin):
            b, n_chunk = struct.unpack_from("<Ii", raw, pos)
            pos += 8
            bins[b] = [struct.unpack_from("<QQ", raw, pos + 16 * j) for j in range(n_chunk)]
            pos += 16 * n_chunk
        (n_intv,) = struct.unpack_from("<i", raw, pos)
        linear = list(struct.unpack_from(f"<{n_intv}Q", raw, pos + 4))
        pos += 4 + 8 * n_intv
        refs.append((bins, linear))
    return [n.decode() for n in names], refs


def _reg2bins(beg, end):
    """Every bin that may hold an interval overlapping [beg, end) (SAM spec 5.3)."""
    end -= 1
    out = [0]
    for first, shift in ((1, 26), (9, 23), (73, 20), (585, 17), (4681, 14)):
        out.extend(range(first + (beg >> shift), first + (end >> shift) + 1))
    return out


def _reference_query(bed, tbi, chrom, beg, end):
    names, refs = tbi
    if chrom not in names:
        return []
    bins, linear = refs[names.index(chrom)]
    min_off = linear[min(beg >> 14, len(linear) - 1)] if linear else 0
    chunks = sorted(c for b in _reg2bins(beg, end) if b != 37450 for c in bins.get(b, []) if c[1] > min_off)
    lines = set()
    for c0, c1 in chunks:
        for line in _read_at(bed, c0, c1).decode().splitlines():
            f = line.split("\t")
            s, e = int(f[1]), int(f[2])
            if f[0] == chrom and s < end and max(e, s + 1) > beg:
                lines.add(line)
    return sorted(lines)


def _brute(rows_text, chrom, beg, end):
    out = []
    for line in rows_text:
        f = line.split("\t")
        s, e = int(f[1]), int(f[2])
        if f[0] == chrom and s < end and max(e, s + 1) > beg:
            out.append(line)
    return sorted(out)


@pytest.mark.parametrize("block", [1, 7, 500, 10_000])
def test_bed_blocks_roundtrip_and_index_answers_every_region(tmp_path, block):
    rng = np.random.default_rng(block)
    rows = _rows(rng)
    path = tmp_path / "hits.bed.gz"
    w = _write_blocks(path, rows, block, header=["chrom\tstart\tend\tname\tscore"])
    assert w.rows_written == len(rows)
    text = gzip.decompress(Path(path).read_bytes()).decode().splitlines()
    assert text[0] == "#chrom\tstart\tend\tname\tscore"
    body = text[1:]
    assert body == [f"{c}\t{s}\t{e}\tm{i}\t{i}" for i, (c, s, e) in enumerate(rows)]
    raw = Path(path).read_bytes()
    assert raw.endswith(BGZF_EOF)
    members = _bgzf_members(raw)
    tbi = _parse_tbi(str(path) + ".tbi")
    assert tbi[0] == ["chrA", "chrB", "chrC"]
    for _ in range(60):
        name, length = CHROMS[rng.integers(len(CHROMS))]
        beg = int(rng.integers(0, length))
        end = int(min(length, beg + rng.integers(1, 300_000)))
        assert _reference_query(members, tbi, name, beg, end) == _brute(body, name, beg, end)


def test_bed_index_read_by_htslib(tmp_path):
    pysam = pytest.importorskip("pysam", reason="htslib cross-check needs pysam (the dev extra)")
    rng = np.random.default_rng(5)
    rows = _rows(rng, n_per_chrom=(2000, 6000, 50))
    path = tmp_path / "hits.bed.gz"
    _write_blocks(path, rows, 333)
    body = gzip.decompress(Path(path).read_bytes()).decode().splitlines()
    tf = pysam.TabixFile(str(path))
    assert list(tf.contigs) == ["chrA", "chrB", "chrC"]
    for _ in range(200):
        name, length = CHROMS[rng.integers(len(CHROMS))]
        beg = int(rng.integers(0, length))
        end = int(min(length, beg + rng.integers(1, 100_000)))
        got = sorted(tf.fetch(name, beg, end))
        want = [x for x in _brute(body, name, beg, end) if int(x.split("\t")[2]) > beg]  # htslib skips empty rows at beg
        assert [g for g in got if int(g.split("\t")[2]) > beg] == want


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_bed_hypothesis_small_files(tmp_path, data):
    n = data.draw(st.integers(0, 60))
    starts = sorted(data.draw(st.lists(st.integers(0, 3_000_000), min_size=n, max_size=n)))
    widths = data.draw(st.lists(st.integers(0, 70_000), min_size=n, max_size=n))
    rows = [("chrB", s, s + w) for s, w in zip(starts, widths)]
    block = data.draw(st.integers(1, 10))
    path = tmp_path / f"h{data.draw(st.integers(0, 10**9))}.bed.gz"
    with SortedBedWriter(path, ["chrA", "chrB"]) as w:
        for i in range(0, len(rows), block):
            part = rows[i:i + block]
            w.write("chrB", [r[1] for r in part], [r[2] for r in part], np.arange(i, i + len(part)))
    body = gzip.decompress(Path(path).read_bytes()).decode().splitlines()
    assert body == [f"chrB\t{s}\t{e}\t{i}" for i, (_, s, e) in enumerate(rows)]  # unique lines
    members = _bgzf_members(Path(path).read_bytes())
    tbi = _parse_tbi(str(path) + ".tbi")
    for beg in (0, 16_383, 16_384, 1_000_000):
        end = beg + data.draw(st.integers(1, 200_000))
        assert _reference_query(members, tbi, "chrB", beg, end) == _brute(body, "chrB", beg, end)


def test_bed_sort_within_block_and_chrom_codes(tmp_path):
    path = tmp_path / "x.bed.gz"
    with SortedBedWriter(path, ["c1", "c2"]) as w:
        w.write(np.array([1, 0, 0]), [5, 9, 2], [6, 10, 3], np.array([0.5, 1.25, 2.0]), sort=True)
        with pytest.raises(InputError, match="rows out of order"):
            w.write("c1", [100], [101], [0.0])    # c1 after c2
        w.write(1, [5], [7], [3.0])               # same start again is fine
    assert gzip.decompress(Path(path).read_bytes()).decode().splitlines() == [
        "c1\t2\t3\t2", "c1\t9\t10\t1.25", "c2\t5\t6\t0.5", "c2\t5\t7\t3"]


@pytest.mark.parametrize("bad, match", [
    (dict(chrom="c1", starts=[5, 4], ends=[6, 6]), r"x\.bed\.gz: rows out of order: c1:4-6 comes after c1:5-6"),
    (dict(chrom="c9", starts=[1], ends=[2]), r"chromosome 'c9' not among"),
    (dict(chrom=5, starts=[1], ends=[2]), r"chromosome index 5 out of range"),
    (dict(chrom="c1", starts=[3], ends=[2]), r"bad interval c1:3-2"),
    (dict(chrom="c1", starts=[1, 2], ends=[2]), r"2 starts but 1 ends"),
])
def test_bed_refuses_bad_rows_with_one_line_error(tmp_path, bad, match):
    path = tmp_path / "x.bed.gz"
    with pytest.raises(InputError, match=match) as exc:
        with SortedBedWriter(path, ["c1", "c2"]) as w:
            w.write(**bad)
    assert "\n" not in str(exc.value)
    assert not path.exists() and not (tmp_path / "x.bed.gz.tbi").exists()
    assert os.listdir(tmp_path) == []   # temporary files removed


def test_bed_out_of_order_across_blocks(tmp_path):
    with SortedBedWriter(tmp_path / "y.bed.gz", ["c1"]) as w:
        w.write("c1", [10, 20], [11, 21])
        with pytest.raises(InputError, match="c1:19-30 comes after c1:20-21"):
            w.write("c1", [19], [30])


def test_bgzf_blocks_are_gzip_and_split_large_data():
    data = os.urandom(200_000)
    enc = bgzf_blocks(data) + BGZF_EOF
    assert gzip.decompress(enc) == data
    assert len(_bgzf_members(enc)) == 5    # 4 x 0xff00 + eof


def test_reg2bin_matches_the_spec_formula():
    def spec(beg, end):
        end -= 1
        if beg >> 14 == end >> 14:
            return ((1 << 15) - 1) // 7 + (beg >> 14)
        if beg >> 17 == end >> 17:
            return ((1 << 12) - 1) // 7 + (beg >> 17)
        if beg >> 20 == end >> 20:
            return ((1 << 9) - 1) // 7 + (beg >> 20)
        if beg >> 23 == end >> 23:
            return ((1 << 6) - 1) // 7 + (beg >> 23)
        if beg >> 26 == end >> 26:
            return ((1 << 3) - 1) // 7 + (beg >> 26)
        return 0

    rng = np.random.default_rng(0)
    for _ in range(2000):
        beg = int(rng.integers(0, 1 << 29))
        end = beg + 1 + int(rng.integers(0, 1 << int(rng.integers(1, 29))))
        assert reg2bin(beg, end) == spec(beg, end)


# -- bedGraph and bigWig -------------------------------------------------------------------------
def _intervals(rng, n=5000):
    out = []
    for name, length in CHROMS:
        cuts = np.unique(rng.integers(0, length, n))
        starts, ends = cuts[:-1:2], cuts[1::2]
        out.append((name, starts, ends[:len(starts)], rng.normal(size=len(starts)).round(3)))
    return out


def test_bedgraph_blocks(tmp_path):
    rng = np.random.default_rng(1)
    data = _intervals(rng, 300)
    path = tmp_path / "f.bedGraph"
    with BedGraphWriter(path, CHROMS, name="feature 3", description="SAE feature 3") as w:
        for name, s, e, v in data:
            for i in range(0, len(s), 37):
                w.write(name, s[i:i + 37], e[i:i + 37], v[i:i + 37])
    lines = path.read_text().splitlines()
    assert lines[0] == 'track type=bedGraph name="feature 3" description="SAE feature 3"'
    want = [f"{n}\t{a}\t{b}\t{x:.4g}" for n, s, e, v in data for a, b, x in zip(s.tolist(), e.tolist(), v.tolist())]
    assert lines[1:] == want


def test_bedgraph_refuses_overlap(tmp_path):
    with pytest.raises(InputError, match="c1:5-9 overlaps c1:0-6"):
        with BedGraphWriter(tmp_path / "g.bedGraph", ["c1"]) as w:
            w.write("c1", [0, 5], [6, 9], [1.0, 2.0])
    assert os.listdir(tmp_path) == []


def test_bigwig_blocks_read_back(tmp_path):
    pyBigWig = pytest.importorskip("pyBigWig", reason="bigWig needs pyBigWig")
    rng = np.random.default_rng(2)
    data = _intervals(rng)
    path = tmp_path / "f.bw"
    with BigWigWriter(path, CHROMS) as w:
        for name, s, e, v in data:
            for i in range(0, len(s), 501):
                w.write(name, s[i:i + 501], e[i:i + 501], v[i:i + 501])
    bw = pyBigWig.open(str(path))
    assert bw.chroms() == dict(CHROMS)
    for name, s, e, v in data:
        got = bw.intervals(name)
        assert [g[0] for g in got] == s.tolist() and [g[1] for g in got] == e.tolist()
        np.testing.assert_allclose([g[2] for g in got], v, rtol=1e-6)
        i = len(s) // 2
        np.testing.assert_allclose(bw.stats(name, int(s[i]), int(e[i]), type="mean")[0], v[i], rtol=1e-6)


def test_bigwig_refuses_disorder_and_needs_lengths(tmp_path):
    pytest.importorskip("pyBigWig", reason="bigWig needs pyBigWig")
    with pytest.raises(InputError, match="needs a length"):
        BigWigWriter(tmp_path / "a.bw", ["chrA"])
    w = BigWigWriter(tmp_path / "b.bw", CHROMS)
    w.write("chrB", [0], [5], [1.0])
    with pytest.raises(InputError, match="rows out of order: chrA:10-20 comes after chrB:0-5"):
        w.write("chrA", [10], [20], [1.0])
    w.abort()
    with pytest.raises(InputError, match="ends past the chromosome's length 5000"):
        with BigWigWriter(tmp_path / "c.bw", CHROMS) as w:
            w.write("chrC", [4990], [5001], [1.0])
    assert os.listdir(tmp_path) == []
