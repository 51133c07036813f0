"""Streaming ``genesae scan`` against the in-memory reference path (``scan_motifs`` + writers).

The streamed path must give byte-identical TSV and BED (same hits, order, scores, p-values and
q-values) whatever the block, run and piece sizes, threads and kernel; BED in genome order and
bgzipped with a tabix index must hold the same lines, found by htslib's region queries.
"""
from __future__ import annotations

import gzip
import io
import os
import stat
import threading

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genesae_fast.cli import cli
from genesae_fast.data import genome_path
from genesae_fast.errors import InputError
from genesae_fast.motifs import Motif, load_motifs, write_meme
from genesae_fast.scan import scan_motifs, write_bed, write_tsv
from genesae_fast.scan_output import scan_to_path
from genesae_fast.scan_stream import scan_genome_file
from genesae_fast.sequences import read_fasta, write_fasta


@pytest.fixture(scope="module")
def jaspar():
    return load_motifs()


@pytest.fixture(scope="module")
def by_width(jaspar):
    """One real JASPAR motif of every width from 5 to 33."""
    out = {}
    for m in jaspar:
        out.setdefault(m.width, m)
    return [out[w] for w in sorted(out)]


def random_fasta(path, rng, lengths, n_rate=0.02, lower_rate=0.05, line=60):
    recs = []
    for i, n in enumerate(lengths):
        letters = np.frombuffer(b"ACGT", np.uint8)[rng.integers(0, 4, n)].copy()
        letters[rng.random(n) < n_rate] = ord("N")
        low = rng.random(n) < lower_rate
        letters[low] += 32
        recs.append((f"chr{i} some description", letters.tobytes().decode()))
    write_fasta(recs, path, width=line)
    return path


def reference_text(fasta, motifs, *, bed=False, **options) -> bytes:
    records = read_fasta(fasta)
    hits = scan_motifs(records, motifs, **options)
    buf = io.StringIO()
    (write_bed if bed else write_tsv)(hits, records, motifs, buf)
    return buf.getvalue().encode()


def streamed_text(fasta, motifs, *, bed=False, genome_order=False, **options) -> bytes:
    buf = io.BytesIO()
    scan_genome_file(fasta, motifs, buf, bed=bed, genome_order=genome_order, **options)
    return buf.getvalue()


def genome_sorted(bed_text: bytes, names) -> bytes:
    """BED lines ordered as the genome-order writer orders them: record, start, motif, strand."""
    rank = {n: i for i, n in enumerate(names)}
    lines = bed_text.decode().splitlines(keepends=True)
    # the reference is motif by motif, so a stable sort by (record, start) keeps motif then + before -
    return "".join(sorted(lines, key=lambda s: (rank[s.split("\t", 2)[0]], int(s.split("\t", 2)[1])))).encode()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32 - 1),
    lengths=st.lists(st.sampled_from([0, 1, 7, 33, 500, 4095, 4097, 9000, 20_000]), min_size=1, max_size=4),
    n_motifs=st.sampled_from([1, 5, 29]),
    block_bases=st.sampled_from([1, 4096, 6000, 1 << 20]),
    run_bytes=st.sampled_from([1, 700, 1 << 23]),
    piece_bytes=st.sampled_from([1, 37, 1000, 1 << 20]),
    batch_hits=st.sampled_from([1, 50, 1 << 16]),
    threads=st.sampled_from([1, 2, 3]),
    both_strands=st.booleans(),
    background=st.sampled_from(["nrdb", "uniform", (0.35, 0.15, 0.2, 0.3)]),
    pvalue=st.sampled_from([1e-2, 1e-3]),
    simd=st.sampled_from(["baseline", "auto"]),
)
def test_streamed_equals_in_memory(tmp_path_factory, by_width, seed, lengths, n_motifs, block_bases, run_bytes,
                                   piece_bytes, batch_hits, threads, both_strands, background, pvalue, simd,
                                   monkeypatch):
    """Byte-identical TSV and BED over a grid of genomes, block/run/piece sizes and options."""
    if simd == "baseline":
        monkeypatch.setenv("GENESAE_SCAN_SIMD", "baseline")
    else:
        monkeypatch.delenv("GENESAE_SCAN_SIMD", raising=False)
    rng = np.random.default_rng(seed)
    fasta = random_fasta(tmp_path_factory.mktemp("g") / "g.fa", rng, lengths)
    motifs = [by_width[i] for i in rng.choice(len(by_width), min(n_motifs, len(by_width)), replace=False)]
    options = dict(pvalue=pvalue, threads=threads, background=background, both_strands=both_strands)
    sizes = dict(block_bases=block_bases, run_bytes=run_bytes, piece_bytes=piece_bytes, batch_hits=batch_hits)
    for bed in (False, True):
        ref = reference_text(fasta, motifs, bed=bed, **options)
        assert streamed_text(fasta, motifs, bed=bed, **options, **sizes) == ref
    names = [r.name for r in read_fasta(fasta)]
    ordered = streamed_text(fasta, motifs, bed=True, genome_order=True, **options, **sizes)
    assert ordered == genome_sorted(reference_text(fasta, motifs, bed=True, **options), names)


def test_streamed_equals_in_memory_on_the_bundled_genome(jaspar, tmp_path):
    """The whole default scan (879 JASPAR motifs, 2.46 Mbp): same TSV, q-values included,
    with hits spilled to disk in many runs and blocks cut every 300 kbp."""
    ref = reference_text(genome_path(), jaspar, threads=2)
    got = streamed_text(genome_path(), jaspar, threads=2, block_bases=300_000, run_bytes=1 << 20,
                        batch_hits=5000, tmp_dir=tmp_path)
    assert got.count(b"\n") == 423_571 + 1  # the hit count of the issue, plus the header
    assert got == ref
    assert os.listdir(tmp_path) == []  # the spill file is gone


def test_sequence_background_streams_the_genome_twice(tmp_path, by_width):
    fasta = random_fasta(tmp_path / "g.fa", np.random.default_rng(5), [30_000, 8_000])
    options = dict(pvalue=1e-3, background="sequence")
    assert streamed_text(fasta, by_width[:8], **options, block_bases=5000) == reference_text(fasta, by_width[:8], **options)


def test_worker_exception_surfaces_and_leaves_no_output(tmp_path, by_width):
    fasta = random_fasta(tmp_path / "g.fa", np.random.default_rng(2), [60_000])
    out = tmp_path / "hits.tsv"
    with pytest.raises(MemoryError):
        scan_to_path(fasta, by_width[:4], str(out), threads=2, _fault_unit=5, block_bases=8192)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["g.fa"]


def test_spill_folder_problems_are_one_line_errors(tmp_path, by_width):
    fasta = random_fasta(tmp_path / "g.fa", np.random.default_rng(2), [5_000])
    with pytest.raises(InputError, match="cannot create the temporary hit file"):
        scan_genome_file(fasta, by_width[:2], io.BytesIO(), tmp_dir=tmp_path / "missing")
    result = run_cli("--genome", fasta, "--motifs", "jaspar2024:CORE:vertebrates", "--tmp-dir", tmp_path / "nope")
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_bgzipped_bed_is_genome_ordered_and_indexed(tmp_path, by_width):
    pysam = pytest.importorskip("pysam", reason="pysam (htslib) is not installed")
    fasta = random_fasta(tmp_path / "g.fa", np.random.default_rng(9), [70_000, 0, 3, 40_000, 90_000])
    out = tmp_path / "hits.bed.gz"
    motifs = by_width[:12]
    info = scan_to_path(fasta, motifs, str(out), bed=True, pvalue=1e-2, threads=2, block_bases=20_000,
                        run_bytes=50_000)
    plain = reference_text(fasta, motifs, bed=True, pvalue=1e-2)
    text = gzip.decompress(out.read_bytes())
    assert text == genome_sorted(plain, info["names"])
    assert info["hits"] == text.count(b"\n") > 10_000
    rows = [line.split("\t") for line in text.decode().splitlines()]
    rng = np.random.default_rng(0)
    with pysam.TabixFile(str(out)) as tb:
        assert set(tb.contigs) == {"chr0", "chr3", "chr4"}
        for _ in range(200):
            chrom = str(rng.choice(tb.contigs))
            a = int(rng.integers(0, 90_000))
            b = a + int(rng.integers(1, 40_000))
            want = ["\t".join(r) for r in rows if r[0] == chrom and int(r[1]) < b and int(r[2]) > a]
            assert list(tb.fetch(chrom, a, b)) == want


def test_gzipped_tsv_is_bgzf(tmp_path, by_width):
    fasta = random_fasta(tmp_path / "g.fa", np.random.default_rng(4), [20_000])
    out = tmp_path / "hits.tsv.gz"
    scan_to_path(fasta, by_width[:5], str(out), pvalue=1e-2)
    raw = out.read_bytes()
    assert raw[12:14] == b"BC"
    assert gzip.decompress(raw) == reference_text(fasta, by_width[:5], pvalue=1e-2)
    assert not (tmp_path / "hits.tsv.gz.tbi").exists()


# --------------------------------------------------------------------------- the command


@pytest.fixture
def small_case(tmp_path, by_width):
    fasta = random_fasta(tmp_path / "g.fa", np.random.default_rng(3), [12_000, 500])
    meme = tmp_path / "m.meme"
    write_meme(by_width[:6], meme)
    return fasta, meme


def run_cli(*args):
    return CliRunner().invoke(cli, ["scan", *map(str, args)])


def test_cli_output_equals_reference_and_threads_are_capped(tmp_path, small_case):
    fasta, meme = small_case
    ref = reference_text(fasta, load_motifs(meme), pvalue=1e-3)
    out = tmp_path / "hits.tsv"
    result = run_cli("--genome", fasta, "--motifs", meme, "--pvalue", "1e-3", "--threads", "100000", "-o", out)
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == ref
    result = run_cli("--genome", fasta, "--motifs", meme, "--pvalue", "1e-3")  # to stdout
    assert result.exit_code == 0
    assert result.stdout_bytes == ref


@pytest.mark.parametrize(("args", "message"), [
    (["--motif-pseudo", "nan"], "--motif-pseudo must be a finite number >= 0, got nan"),
    (["--motif-pseudo", "inf"], "--motif-pseudo must be a finite number >= 0, got inf"),
    (["--motif-pseudo", "-0.5"], "--motif-pseudo must be a finite number >= 0, got -0.5"),
    (["--pvalue", "nan"], "--pvalue must be in (0, 1], got nan"),
    (["--pvalue", "0"], "--pvalue must be in (0, 1], got 0.0"),
    (["-o", "no/such/folder/hits.tsv"], "folder no/such/folder does not exist"),
])
def test_cli_bad_options_give_one_line_errors(tmp_path, small_case, args, message, monkeypatch):
    fasta, meme = small_case
    monkeypatch.chdir(tmp_path)
    result = run_cli("--genome", fasta, "--motifs", meme, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_cli_motif_too_wide_is_a_one_line_error(tmp_path, small_case):
    fasta, _ = small_case
    meme = tmp_path / "wide.meme"
    write_meme([Motif("WIDE1", "wide", np.full((40, 4), 0.25), 10)], meme)
    result = run_cli("--genome", fasta, "--motifs", meme, "-o", tmp_path / "x.tsv")
    assert result.exit_code == 2
    assert "motif WIDE1 is 40 columns wide; the scanner takes widths 1 to 33" in result.output
    assert not (tmp_path / "x.tsv").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_cli_writes_through_a_fifo(tmp_path, small_case):
    fasta, meme = small_case
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = {}
    reader = threading.Thread(target=lambda: got.setdefault("data", fifo.read_bytes()))
    reader.start()
    result = run_cli("--genome", fasta, "--motifs", meme, "--pvalue", "1e-3", "-o", fifo)
    reader.join(timeout=60)
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # still a FIFO, not replaced by a file
    assert got["data"] == reference_text(fasta, load_motifs(meme), pvalue=1e-3)
    if os.path.exists("/dev/null"):  # a device: written through, never replaced
        result = run_cli("--genome", fasta, "--motifs", meme, "--pvalue", "1e-3", "-o", "/dev/null")
        assert result.exit_code == 0, result.output
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_bad_genome_is_a_one_line_error(tmp_path, small_case):
    _, meme = small_case
    bad = tmp_path / "bad.fa"
    bad.write_text(">a\nACGT\nAC!T\n")
    result = run_cli("--genome", bad, "--motifs", meme)
    assert result.exit_code == 2
    assert "line 3: invalid character '!'" in result.output
    with pytest.raises(InputError, match="no such file"):
        scan_genome_file(tmp_path / "missing.fa", load_motifs(meme), io.BytesIO())


def test_motifs_loaded_while_the_genome_is_read(tmp_path, by_width):
    """A motif loader (called while a reader thread decodes the genome) gives the same text as
    the loaded list; its error wins over a bad genome's and stops the reader thread."""
    fasta = random_fasta(tmp_path / "g.fa", np.random.default_rng(9), [40_000, 3_000])
    motifs = by_width[:6]
    options = dict(pvalue=1e-3, piece_bytes=1000, block_bases=5000)
    assert streamed_text(fasta, lambda: motifs, **options) == reference_text(fasta, motifs, pvalue=1e-3)
    bad = tmp_path / "bad.fa"
    bad.write_bytes(b">a\nAC!T\n")
    before = threading.active_count()

    def broken():
        raise InputError("motifs.meme: no motifs found")

    with pytest.raises(InputError, match="no motifs found"):
        scan_genome_file(bad, broken, io.BytesIO())
    assert threading.active_count() == before


def test_writeback_requests_leave_the_output_unchanged(tmp_path, by_width, monkeypatch):
    """Writeback is asked for after every batch here: regular files, in-memory buffers (no file
    descriptor) and FIFOs (where the kernel refuses the hint) get the same bytes."""
    from genesae_fast import scan_stream

    monkeypatch.setattr(scan_stream._OrderedWriter, "WRITEBACK_BYTES", 1)
    fasta = random_fasta(tmp_path / "g.fa", np.random.default_rng(4), [30_000, 2_000])
    ref = reference_text(fasta, by_width[:6], pvalue=1e-3)
    out = tmp_path / "hits.tsv"
    scan_to_path(fasta, by_width[:6], str(out), pvalue=1e-3, batch_hits=50)
    assert out.read_bytes() == ref
    assert streamed_text(fasta, by_width[:6], pvalue=1e-3, batch_hits=50) == ref
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "pipe"
        os.mkfifo(fifo)
        got = {}
        reader = threading.Thread(target=lambda: got.setdefault("data", fifo.read_bytes()))
        reader.start()
        scan_to_path(fasta, by_width[:6], str(fifo), pvalue=1e-3, batch_hits=50)
        reader.join(timeout=60)
        assert got["data"] == ref
