"""Gene-structure concepts: pyrodigal calls, GFF3 input, RBS search."""
from __future__ import annotations

import numpy as np
import pytest

from genesae_fast.annotate.genes import GeneCall, find_rbs, gene_concepts, predict_genes, read_gff3
from genesae_fast.errors import InputError
from genesae_fast.sequences import Record, read_fasta

_RC = str.maketrans("ACGT", "TGCA")


@pytest.fixture(scope="module")
def slice_records():
    from genesae_fast.data import genome_path

    r = read_fasta(genome_path())[0]
    n = 60_000
    return [Record(r.name, "", r.codes[:n].copy(), r.softmask[:n].copy())]


@pytest.fixture(scope="module")
def calls(slice_records):
    return predict_genes(slice_records)


def _bases(seq: str, hits, strand: int) -> list[str]:
    out = []
    for s, e in zip(hits.start, hits.end):
        w = seq[s:e]
        out.append(w if strand > 0 else w.translate(_RC)[::-1])
    return out


def test_start_and_stop_codons_are_real(slice_records, calls):
    seq = slice_records[0].sequence
    assert len(calls) > 30
    c = gene_concepts(calls, np.array([0]), np.array([len(seq)]))
    for sg, strand in (("+", 1), ("-", -1)):
        starts = _bases(seq, c[f"start codon({sg})"], strand)
        stops = _bases(seq, c[f"stop codon({sg})"], strand)
        assert set(starts) <= {"ATG", "GTG", "TTG"}, set(starts)
        assert set(stops) <= {"TAA", "TAG", "TGA"}, set(stops)
        # the first codon position of the start codon is its first base on the gene's strand
        pos1 = set(c[f"codon pos 1({sg})"].start.tolist())
        first = c[f"start codon({sg})"].start if strand > 0 else c[f"start codon({sg})"].end - 1
        assert set(first.tolist()) <= pos1


def test_codon_positions_partition_cds_and_intergenic_is_the_rest(slice_records, calls):
    L = len(slice_records[0])
    c = gene_concepts(calls, np.array([0]), np.array([L]))
    cover = np.zeros(L, int)
    for sg in "+-":
        cds = np.zeros(L, bool)
        for s, e in zip(c[f"CDS({sg})"].start, c[f"CDS({sg})"].end):
            cds[s:e] = True
        phase = np.zeros(L, int)
        for k in (1, 2, 3):
            h = c[f"codon pos {k}({sg})"]
            assert np.all(h.end - h.start == 1)
            phase[h.start] += 1
        assert np.array_equal(phase > 0, cds)
        cover += cds
    inter = np.zeros(L, bool)
    for s, e in zip(c["intergenic"].start, c["intergenic"].end):
        inter[s:e] = True
    assert np.array_equal(inter, cover == 0)


def test_rbs_upstream_of_start(slice_records, calls):
    with_rbs = [g for g in calls if g.rbs is not None]
    assert len(with_rbs) > 10
    for g in with_rbs:
        if g.strand > 0:
            assert g.start - 20 <= g.rbs[0] < g.rbs[1] <= g.start
        else:
            assert g.end <= g.rbs[0] < g.rbs[1] <= g.end + 20


def test_find_rbs_on_both_strands():
    up = "CCCCCCAGGAGGCCCCCCCC"  # SD ends 8 bases before the start
    seq = "T" * 10 + up + "ATG" + "AAA" * 10 + "TAA" + "T" * 10
    g = GeneCall(0, 30, 30 + 36, 1)
    s, e = find_rbs(seq, g)
    assert seq[s:e] == "AGGAGG"
    rc = seq.translate(_RC)[::-1]
    L = len(seq)
    g2 = GeneCall(0, L - 66, L - 30, -1)
    s2, e2 = find_rbs(rc, g2)
    assert rc[s2:e2].translate(_RC)[::-1] == "AGGAGG"
    assert find_rbs("C" * 40 + "ATGAAATAA", GeneCall(0, 40, 49, 1)) is None


def test_gff3_round_trip_and_errors(tmp_path, slice_records, calls):
    name = slice_records[0].name
    gff = tmp_path / "genes.gff3"
    lines = ["##gff-version 3"]
    for i, g in enumerate(calls):
        lines.append(f"{name}\tpyrodigal\tCDS\t{g.start + 1}\t{g.end}\t.\t{'+' if g.strand > 0 else '-'}\t0\tID=cds{i}")
    gff.write_text("\n".join(lines) + "\n")
    back = read_gff3(gff, slice_records)
    assert [(g.start, g.end, g.strand) for g in back] == [(g.start, g.end, g.strand) for g in calls]
    L = len(slice_records[0])
    a = gene_concepts(back, np.array([0]), np.array([L]))
    b = gene_concepts(calls, np.array([0]), np.array([L]))
    for key in ("CDS(+)", "codon pos 2(-)", "intergenic"):
        np.testing.assert_array_equal(a[key].start, b[key].start)
    bad = tmp_path / "bad.gff3"
    for text, msg in ((f"{name}\tx\tCDS\t1\t10\n", "9 tab-separated"),
                      ("chrZ\tx\tCDS\t1\t10\t.\t+\t0\tID=a\n", "not in the genome"),
                      (f"{name}\tx\tCDS\tone\t10\t.\t+\t0\tID=a\n", "not integers"),
                      (f"{name}\tx\tCDS\t5\t99999999\t.\t+\t0\tID=a\n", "outside")):
        bad.write_text(text)
        with pytest.raises(InputError, match=msg) as err:
            read_gff3(bad, slice_records)
        assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_small_input_uses_meta_mode():
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 4, 5000).astype(np.uint8)
    calls = predict_genes([Record("x", "", codes, np.zeros(5000, bool))])
    assert isinstance(calls, list)


def test_find_rbs_tries_every_word_of_the_best_length():
    # two 5-letter pieces of AGGAGG: GGAGG sits at the ideal spacer, AGGAG far from it;
    # the word order must not decide, the spacer must
    up = "AGGAG" + "CCC" + "GGAGG" + "C" * 7
    assert len(up) == 20
    seq = up + "ATG" + "AAA" * 5 + "TAA"
    s, e = find_rbs(seq, GeneCall(0, 20, len(seq), 1))
    assert seq[s:e] == "GGAGG" and 20 - e == 7
