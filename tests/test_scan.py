"""Motif scanning: the C++ scanner against a numpy reference and against FIMO (pymemesuite).

FIMO itself (pymemesuite, a dev dependency) is imported only by the tests that compare with
it, so the numpy-reference tests run without it. Tests of the native kernel run once per
compiled kernel (``GENESAE_SCAN_SIMD=baseline`` and the automatic choice, AVX2 where present).
"""
from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genesae_fast import _native
from genesae_fast.errors import InputError
from genesae_fast.fimo_pvalues import (
    apply_pseudocount,
    build_pssm,
    finish_background,
    nrdb_background,
    pvalue_table,
    reverse_complement_probs,
)
from genesae_fast.motifs import Motif, load_motifs, write_meme
from genesae_fast.scan import ScanHits, fimo_qvalues, resolve_background, scan_motifs, write_bed, write_tsv
from genesae_fast.sequences import Record, encode


@pytest.fixture
def pymemesuite():
    """FIMO (pymemesuite): the reference for hits and p-values; skipped when not installed."""
    pytest.importorskip("pymemesuite.fimo", reason="pymemesuite (FIMO) is not installed")
    import pymemesuite.common
    import pymemesuite.fimo

    return pymemesuite


@pytest.fixture(params=["baseline", "auto"])
def simd(request, monkeypatch):
    """Each native-kernel test runs on the portable kernel and on the one picked at run time."""
    if request.param == "baseline":
        monkeypatch.setenv("GENESAE_SCAN_SIMD", "baseline")
    else:
        monkeypatch.delenv("GENESAE_SCAN_SIMD", raising=False)
    return _native.scan_simd_active()


def default_meme_path():
    from pathlib import Path

    import genesae_fast.data as d

    return Path(d.__file__).parent / "jaspar2024_core_vertebrates.meme"


def random_records(rng, lengths, n_rate=0.0, lower_rate=0.0):
    recs = []
    for i, L in enumerate(lengths):
        letters = np.frombuffer(b"ACGT", np.uint8)[rng.integers(0, 4, L)].copy()
        if n_rate:
            letters[rng.random(L) < n_rate] = ord("N")
        if lower_rate:
            low = rng.random(L) < lower_rate
            letters[low] = letters[low] + 32
        s = letters.tobytes().decode()
        recs.append(Record(f"seq{i}", "", encode(s), np.zeros(L, bool)))
        recs[-1].text = s
    return recs


# --------------------------------------------------------------------------- reference


def reference_scan(codes_list, cells_list, thresholds):
    """Every window's integer score by numpy fancy indexing; hits = score >= threshold, no N."""
    out = []
    for e, (cells, thr) in enumerate(zip(cells_list, thresholds, strict=False)):
        w = cells.shape[0]
        for s, codes in enumerate(codes_list):
            n = codes.shape[0] - w + 1
            if n <= 0:
                continue
            idx = np.arange(n)[:, None] + np.arange(w)[None, :]
            win = codes[idx]
            valid = (win < 4).all(1)
            score = cells[np.arange(w)[None, :], np.minimum(win, 3)].sum(1)
            for p in np.flatnonzero(valid & (score >= thr)):
                out.append((e, s, int(p), int(score[p])))
    return sorted(out)


def native_scan(codes_list, cells_list, thresholds, threads):
    offsets = np.concatenate([[0], np.cumsum([c.shape[0] for c in cells_list])]).astype(np.int64)
    cells = np.concatenate(cells_list).astype(np.int16)
    e, s, p, sc = _native.scan_pssms(codes_list, cells, offsets, np.asarray(thresholds, np.int32), threads)
    return sorted(zip(e.tolist(), s.tolist(), p.tolist(), sc.tolist(), strict=False))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32 - 1),
    n_motifs=st.sampled_from([1, 3, 63, 64, 65, 130]),
    lengths=st.lists(st.sampled_from([0, 1, 5, 33, 34, 200, 4095, 4096, 4097, 9000]), min_size=1, max_size=3),
    n_rate=st.sampled_from([0.0, 0.01, 0.3]),
    threads=st.sampled_from([1, 2, 3]),
)
def test_native_scan_equals_numpy_reference(seed, n_motifs, lengths, n_rate, threads, simd):
    rng = np.random.default_rng(seed)
    codes = [r.codes for r in random_records(rng, lengths, n_rate)]
    cells = [rng.integers(0, 1001, size=(int(rng.integers(1, 34)), 4)).astype(np.int16) for _ in range(n_motifs)]
    thr = []
    for c in cells:
        top = int(c.max(1).sum())
        # a mix of thresholds: everything, nothing, near the top (the realistic case)
        thr.append(int(rng.choice([0, top + 1, top - int(rng.integers(0, 1500)), 33001])))
    assert native_scan(codes, cells, thr, threads) == reference_scan(codes, cells, thr)


def test_native_scan_widths_1_to_33_all_windows(rng, simd):
    """Threshold 0: every ACGT-only window of every width appears exactly once."""
    codes = [r.codes for r in random_records(rng, [300, 40], n_rate=0.05)]
    cells = [rng.integers(0, 1001, size=(w, 4)).astype(np.int16) for w in range(1, 34)]
    thr = [0] * len(cells)
    assert native_scan(codes, cells, thr, 2) == reference_scan(codes, cells, thr)


def test_native_scan_rejects_bad_input():
    c = np.zeros((3, 4), np.int16)
    with pytest.raises(ValueError, match="one more entry than thresholds"):
        _native.scan_pssms([np.zeros(10, np.uint8)], c, np.array([0, 2], np.int64), np.array([0, 0], np.int32), 1)
    with pytest.raises(ValueError, match="cells must lie in 0..1000"):
        _native.scan_pssms([np.zeros(10, np.uint8)], c + 1001, np.array([0, 3], np.int64), np.array([0], np.int32), 1)
    with pytest.raises(ValueError, match="widths must be 1..33"):
        _native.scan_pssms([np.zeros(10, np.uint8)], np.zeros((40, 4), np.int16), np.array([0, 34], np.int64),
                           np.array([0], np.int32), 1)


# --------------------------------------------------------------------------- p-values


def test_pvalue_tables_native_equal_reference_and_brute_force(rng):
    bg = nrdb_background()
    mats = [rng.integers(0, 1001, size=(w, 4)).astype(np.int16) for w in (1, 2, 3, 5, 12, 33)]
    mats.append(np.full((4, 4), 7, np.int16))  # all cells equal
    offsets = np.concatenate([[0], np.cumsum([m.shape[0] for m in mats])]).astype(np.int64)
    cells = np.concatenate(mats)
    full, starts, _ = _native.pvalue_tables(cells, offsets, bg, 2.0, 2)  # pvalue >= 1: whole tables
    assert (starts == 0).all()
    for m, t in zip(mats, full, strict=False):
        ref = pvalue_table(m, bg)
        best = int(m.max(1).sum())
        assert np.array_equal(t, ref[: best + 1])
        assert (ref[best + 1:] == 0).all()
        if m.shape[0] <= 5:  # enumerate every word
            w = m.shape[0]
            words = np.array(list(itertools.product(range(4), repeat=w)))
            score = m[np.arange(w), words].sum(1)
            prob = bg[words].prod(1)
            for S in np.unique(np.concatenate([score, [0]])):
                assert t[S] == pytest.approx(min(1.0, prob[score >= S].sum()), rel=1e-12, abs=1e-300)
    for pvalue in (1e-2, 1e-4, 1e-7):
        tails, starts, thr = _native.pvalue_tables(cells, offsets, bg, pvalue, 1)
        for m, t, s0, th in zip(mats, tails, starts, thr, strict=False):
            ref = pvalue_table(m, bg)
            assert np.array_equal(t, ref[s0: s0 + t.size])  # the tail is exact
            below = np.flatnonzero(ref < pvalue)
            assert th == below[0]
            assert (s0 == 0 or ref[s0] >= pvalue)


def test_background_and_matrices_equal_fimo(pymemesuite):
    """nrdb background, pseudocount, integer cells, scale/offset and p-value tables as FIMO's."""
    with pymemesuite.common.MotifFile(str(default_meme_path()), symmetrical=True) as mf:  # closed: no ResourceWarning
        assert np.array_equal(np.array(list(mf.background.frequencies)), nrdb_background())
        ours = load_motifs()
        bg = nrdb_background()
        for i, pm in enumerate(mf):
            pssm = pm.build_pssm(mf.background)
            mine = build_pssm(apply_pseudocount(ours[i].probs, ours[i].nsites, bg, 0.1), bg, table=(i % 40 == 0))
            assert np.array_equal(np.array([list(r) for r in pssm.matrix]), mine.cells), ours[i].id
            assert (pssm.scale, pssm.offset) == (mine.scale, mine.offset)
            if i % 40 == 0:
                assert np.array_equal(np.array(list(pssm.pvalues)), mine.pv), ours[i].id


def test_uniform_background_equals_fimo_from_uniform(pymemesuite):
    assert np.array_equal(finish_background([0.25] * 4), np.array(list(pymemesuite.common.Background.from_uniform(
        pymemesuite.common.Alphabet.dna()).frequencies)))


# --------------------------------------------------------------------------- against FIMO


def fimo_hits(meme_path, records, pseudocount=0.1, background=None, threshold=1e-4):
    """(motif, seq, start0, strand) -> (pvalue, score) from pymemesuite's FIMO.

    pymemesuite never scores a record's last window, so each record gets a trailing N (which
    makes no window of its own)."""
    from pymemesuite.common import MotifFile, Sequence
    from pymemesuite.fimo import FIMO

    with MotifFile(str(meme_path), symmetrical=True, pseudocount=pseudocount) as mf:  # closed: no ResourceWarning
        bg = background if background is not None else mf.background
        seqs = [Sequence(r.text + "N", name=r.name.encode()) for r in records]
        fimo = FIMO(both_strands=True, threshold=threshold, max_stored_scores=10**9)
        names = {r.name: i for i, r in enumerate(records)}
        out = {}
        for mi, m in enumerate(mf):
            pat = fimo.score_motif(m, seqs, bg)
            for e in pat.matched_elements:
                key = (mi, names[e.source.accession.decode()], min(e.start, e.stop) - 1, 1 if e.strand == "+" else -1)
                out[key] = (e.pvalue, e.score)
    return out


def ours_dict(hits: ScanHits):
    return {(int(hits.motif[k]), int(hits.seq[k]), int(hits.start[k]), int(hits.strand[k])): (hits.pvalue[k], hits.score[k])
            for k in range(len(hits))}


def assert_same_as_fimo(ref, ours):
    assert set(ref) == set(ours)
    for key, (p, s) in ref.items():
        q, t = ours[key]
        # + strand: bit-identical. - strand: FIMO's CLI builds the reverse table from the
        # reverse-complement motif (as we do); pymemesuite reuses the forward table, whose
        # DP adds the same terms in another order (last-bit differences).
        assert q == p if key[3] > 0 else q == pytest.approx(p, rel=1e-12), key
        assert t == pytest.approx(s, rel=1e-12, abs=1e-12), key


@pytest.fixture(scope="module")
def jaspar_subset():
    """Real JASPAR motifs of every width from 5 to 33 (one per width where JASPAR has it)."""
    motifs = load_motifs()
    by_width = {}
    for m in motifs:
        by_width.setdefault(m.width, m)
    return [by_width[w] for w in sorted(by_width)]


def test_hits_equal_fimo_on_random_sequences(tmp_path, jaspar_subset, pymemesuite, simd):
    rng = np.random.default_rng(7)
    records = random_records(rng, [60_000, 20_000, 7, 0], n_rate=0.002, lower_rate=0.1)
    path = tmp_path / "sub.meme"
    write_meme(jaspar_subset, path)
    ref = fimo_hits(path, records)
    hits = scan_motifs(records, load_motifs(path), threads=2)
    assert len(ref) > 200
    assert_same_as_fimo(ref, ours_dict(hits))


def test_hits_equal_fimo_on_the_genome_at_looser_threshold(tmp_path, jaspar_subset, pymemesuite):
    from genesae_fast.data import genome_path
    from genesae_fast.sequences import read_fasta

    rec = read_fasta(genome_path())[0]
    sl = Record(rec.name, "", rec.codes[:30_000].copy(), rec.softmask[:30_000].copy())
    sl.text = sl.sequence
    path = tmp_path / "sub.meme"
    sub = jaspar_subset[::3]
    write_meme(sub, path)
    ref = fimo_hits(path, [sl], threshold=1e-3)
    hits = scan_motifs([sl], load_motifs(path), pvalue=1e-3, threads=1)
    assert len(ref) > 200
    assert_same_as_fimo(ref, ours_dict(hits))


def test_uniform_background_and_no_pseudocount_equal_fimo(tmp_path, jaspar_subset, pymemesuite):
    """--bg uniform with the pseudocount already in the file: FIMO with Background.from_uniform."""
    rng = np.random.default_rng(3)
    records = random_records(rng, [30_000])
    ubg = finish_background([0.25] * 4)
    pre = [Motif(m.id, m.alt_id, apply_pseudocount(m.probs, m.nsites, ubg, 0.1), m.nsites) for m in jaspar_subset[:12]]
    path = tmp_path / "pre.meme"
    write_meme(pre, path, decimals=17)
    common = pymemesuite.common
    ref = fimo_hits(path, records, pseudocount=0.0, background=common.Background.from_uniform(common.Alphabet.dna()))
    hits = scan_motifs(records, load_motifs(path), background="uniform", motif_pseudo=0.0)
    assert len(ref) > 20
    assert_same_as_fimo(ref, ours_dict(hits))


# --------------------------------------------------------------------------- API details


def test_hit_fields_and_matched_sequences(rng, jaspar_subset):
    records = random_records(rng, [5000, 3000], n_rate=0.01)
    motifs = jaspar_subset[:6]
    hits = scan_motifs(records, motifs, pvalue=1e-3)
    assert len(hits) > 0
    assert hits.motif.dtype == np.int32
    assert hits.seq.dtype == np.int32
    assert hits.strand.dtype == np.int8
    assert hits.start.dtype == np.int64
    assert hits.end.dtype == np.int64
    widths = np.array([m.width for m in motifs])
    assert np.array_equal(hits.end - hits.start, widths[hits.motif])
    assert ((hits.pvalue < 1e-3) & (hits.qvalue >= hits.pvalue)).all()
    key = np.lexsort((-hits.strand, hits.start, hits.seq, hits.motif))
    assert np.array_equal(key, np.arange(len(hits)))
    # q-values: FIMO's per-motif Benjamini-Hochberg over every ACGT-only window of both strands
    for mi in np.unique(hits.motif):
        sel = hits.motif == mi
        w = motifs[mi].width
        n_tests = 2 * sum(int(((np.lib.stride_tricks.sliding_window_view(r.codes, w) < 4).all(1)).sum())
                          for r in records if len(r.codes) >= w)
        np.testing.assert_array_equal(hits.qvalue[sel], fimo_qvalues(hits.pvalue[sel], n_tests))
    # the score of every hit is the rounded-domain log-odds of its matched word
    bg = nrdb_background()
    for k in range(0, len(hits), max(1, len(hits) // 50)):
        m = motifs[hits.motif[k]]
        probs = apply_pseudocount(m.probs, m.nsites, bg, 0.1)
        if hits.strand[k] < 0:
            probs = reverse_complement_probs(probs)
        p = build_pssm(probs, bg)
        word = records[hits.seq[k]].codes[hits.start[k]:hits.end[k]]
        S = int(p.cells[np.arange(m.width), word].sum())
        assert hits.score[k] == p.raw_score(S)
        assert hits.pvalue[k] == p.pv[S]


def test_qvalues_are_benjamini_hochberg():
    rng = np.random.default_rng(1)
    p = rng.random(200) * 1e-4
    p[:10] = p[10]  # ties
    q = fimo_qvalues(p, 123_456)
    order = np.argsort(p, kind="stable")
    m = float(np.float32(123_456))
    ref = np.empty_like(p)
    for rank, i in enumerate(order, 1):
        ref[i] = min(1.0, min(p[j] * m / k for k, j in enumerate(order, 1) if k >= rank))
    np.testing.assert_allclose(q, ref, rtol=1e-12)
    assert fimo_qvalues(np.zeros(0), 10).shape == (0,)


def test_bad_options_raise_input_error(rng, jaspar_subset):
    records = random_records(rng, [100])
    with pytest.raises(InputError, match="pvalue"):
        scan_motifs(records, jaspar_subset[:1], pvalue=0)
    with pytest.raises(InputError, match="--bg"):
        scan_motifs(records, jaspar_subset[:1], background="nonsense")
    for bad in (-1, float("nan"), float("inf"), -float("inf")):
        with pytest.raises(InputError, match="--motif-pseudo must be a finite number >= 0"):
            scan_motifs(records, jaspar_subset[:1], motif_pseudo=bad)
    for bad in (0, -1e-4, 1.5, float("nan")):
        with pytest.raises(InputError, match="--pvalue"):
            scan_motifs(records, jaspar_subset[:1], pvalue=bad)
    wide = Motif("WIDE1", "wide", np.full((34, 4), 0.25), 10)
    with pytest.raises(InputError, match="motif WIDE1 is 34 columns wide; the scanner takes widths 1 to 33"):
        scan_motifs(records, [jaspar_subset[0], wide])


def test_worker_exception_becomes_a_python_exception(rng):
    """A worker that throws (here std::bad_alloc, forced by the test hook) raises MemoryError
    in Python after every thread has joined, instead of terminating the process."""
    codes = [r.codes for r in random_records(rng, [50_000])]
    cells = [rng.integers(0, 1001, size=(8, 4)).astype(np.int16)]
    offsets = np.array([0, 8], np.int64)
    for threads, unit in ((1, 0), (2, 3), (3, 12)):
        with pytest.raises(MemoryError):
            _native.scan_pssms(codes, cells[0], offsets, np.array([0], np.int32), threads, _fault_unit=unit)
    # the same scan without the fault still works afterwards
    assert native_scan(codes, cells, [0], 2) == reference_scan(codes, cells, [0])


def test_thread_counts_are_capped(rng, jaspar_subset):
    records = random_records(rng, [30_000])
    a = scan_motifs(records, jaspar_subset[:6], pvalue=1e-3, threads=100_000)
    b = scan_motifs(records, jaspar_subset[:6], pvalue=1e-3, threads=1)
    assert len(a) > 0
    assert all(np.array_equal(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__)
    codes = [r.codes for r in records]
    cells = [rng.integers(0, 1001, size=(9, 4)).astype(np.int16)]
    assert native_scan(codes, cells, [5000], 100_000) == reference_scan(codes, cells, [5000])


def test_simd_switch_and_both_kernels_agree(monkeypatch, jaspar_subset):
    """GENESAE_SCAN_SIMD=baseline forces the portable kernel; both kernels give the same hits."""
    from genesae_fast.data import genome_path
    from genesae_fast.sequences import read_fasta

    paths = _native.scan_simd_paths()
    assert paths[0] == "baseline"
    monkeypatch.setenv("GENESAE_SCAN_SIMD", "baseline")
    assert _native.scan_simd_active() == "baseline"
    rec = read_fasta(genome_path())[0]
    part = [Record(rec.name, "", rec.codes[:200_000].copy(), rec.softmask[:200_000].copy())]
    base = scan_motifs(part, jaspar_subset, pvalue=1e-3, threads=2)
    monkeypatch.delenv("GENESAE_SCAN_SIMD")
    assert _native.scan_simd_active() == paths[-1]
    auto = scan_motifs(part, jaspar_subset, pvalue=1e-3, threads=2)
    assert len(base) > 1000
    assert all(np.array_equal(getattr(base, f), getattr(auto, f)) for f in base.__dataclass_fields__)


def test_empty_inputs(rng, jaspar_subset):
    assert len(scan_motifs([], jaspar_subset[:2])) == 0
    assert len(scan_motifs(random_records(rng, [100]), [])) == 0


def test_tsv_and_bed_writers(rng, jaspar_subset):
    import io

    records = random_records(rng, [4000])
    hits = scan_motifs(records, jaspar_subset[:4], pvalue=1e-3)
    tsv, bed = io.StringIO(), io.StringIO()
    write_tsv(hits, records, jaspar_subset[:4], tsv)
    write_bed(hits, records, jaspar_subset[:4], bed)
    rows = [line.split("\t") for line in tsv.getvalue().splitlines()]
    assert rows[0][:3] == ["motif_id", "motif_alt_id", "sequence_name"]
    assert len(rows) == len(hits) + 1
    comp = str.maketrans("ACGT", "TGCA")
    for k, row in enumerate(rows[1:]):
        start, stop = int(row[3]), int(row[4])
        assert start == hits.start[k] + 1
        assert stop == hits.end[k]
        word = records[0].text[start - 1:stop].upper()
        assert row[9] == (word if row[5] == "+" else word.translate(comp)[::-1])
    assert len(bed.getvalue().splitlines()) == len(hits)


def test_cli_scan_runs_without_torch(tmp_path, rng, jaspar_subset):
    from genesae_fast.sequences import write_fasta

    records = random_records(rng, [3000, 500])
    fa = tmp_path / "g.fa"
    write_fasta([(r.name, r.text) for r in records], fa)
    mp = tmp_path / "m.meme"
    write_meme(jaspar_subset[:5], mp)
    out = tmp_path / "hits.tsv"
    code = (
        "import sys\nfrom genesae_fast.cli import main\n"
        f"try:\n    main(['scan', '--genome', {str(fa)!r}, '--motifs', {str(mp)!r}, '--pvalue', '1e-3', '--out', {str(out)!r}])\n"
        "except SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    hits = scan_motifs(records, load_motifs(mp), pvalue=1e-3)
    assert len(out.read_text().splitlines()) == len(hits) + 1
    bad = subprocess.run([sys.executable, "-c", "from genesae_fast.cli import main; main()", "scan", "--genome", str(fa), "--motifs", str(mp),
                          "--bg", "nonsense"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "--bg" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_background_choices_agree(tmp_path, rng, jaspar_subset):
    """A background file, a frequency list and 'sequence' give the same scan for the same numbers."""
    from genesae_fast.fimo_pvalues import sequence_background

    records = random_records(rng, [20_000])
    bfile = tmp_path / "bg.txt"
    bfile.write_text("# order 0\nA 0.3\nC 0.2\nG 0.2\nT 0.3\nAA 0.09\n")
    a = scan_motifs(records, jaspar_subset[:5], pvalue=1e-3, background=str(bfile))
    b = scan_motifs(records, jaspar_subset[:5], pvalue=1e-3, background=[0.3, 0.2, 0.2, 0.3])
    assert len(a) > 0
    assert all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("motif", "start", "pvalue"))
    counts = np.bincount(records[0].codes, minlength=4)[:4]
    c = scan_motifs(records, jaspar_subset[:5], pvalue=1e-3, background="sequence")
    d = scan_motifs(records, jaspar_subset[:5], pvalue=1e-3, background=(counts + 0.25) / (counts.sum() + 1))
    assert np.array_equal(c.pvalue, d.pvalue)
    assert np.array_equal(c.start, d.start)
    assert np.array_equal(sequence_background(records), resolve_background("sequence", records))
    bad = tmp_path / "bad.txt"
    bad.write_text("A 0.5\nC 0.5\n")
    with pytest.raises(InputError, match="lacks frequencies for GT"):
        scan_motifs(records, jaspar_subset[:1], background=str(bad))


@pytest.mark.parametrize("bg", [nrdb_background(), np.array([0.3, 0.2, 0.25, 0.25])])
def test_reverse_strand_matrices(bg, jaspar_subset):
    """The reverse strand is scored with the matrix built from the reverse-complement motif."""
    from genesae_fast.scan import prepare_motifs

    prep = prepare_motifs(jaspar_subset, bg, 1e-4, 0.1, True)
    for m, (fwd, rev) in zip(jaspar_subset, prep.pssms, strict=False):
        probs = apply_pseudocount(m.probs, m.nsites, bg, 0.1)
        ref = build_pssm(reverse_complement_probs(probs), bg)
        assert np.array_equal(rev.cells, ref.cells)
        assert (rev.scale, rev.offset) == (ref.scale, ref.offset)
        assert np.array_equal(rev.pv, ref.pv[rev.pv_start: rev.pv_start + rev.pv.size])
        assert np.array_equal(fwd.cells, build_pssm(probs, bg, table=False).cells)


def test_single_strand_is_the_plus_half(rng, jaspar_subset):
    records = random_records(rng, [20_000])
    # uniform: the same background with or without reverse-complement averaging
    both = scan_motifs(records, jaspar_subset[:8], pvalue=1e-3, background="uniform")
    plus = scan_motifs(records, jaspar_subset[:8], pvalue=1e-3, background="uniform", both_strands=False)
    assert (plus.strand == 1).all()
    assert len(plus) > 0
    keep = both.strand == 1
    assert np.array_equal(plus.start, both.start[keep])
    assert np.array_equal(plus.motif, both.motif[keep])
    assert np.array_equal(plus.pvalue, both.pvalue[keep])
