"""The CLI skeleton, `genesae kmers` and `genesae info` on FASTA, through CliRunner."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from genesae_fast import __version__
from genesae_fast.cli import COMMANDS, cli
from genesae_fast.kmers import unpack
from genesae_fast.sequences import read_fasta
from genesae_fast import data


@pytest.fixture
def runner():
    return CliRunner()


def test_version_and_help(runner):
    assert runner.invoke(cli, ["--version"]).output.strip() == f"genesae, version {__version__}"
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert f"  {name} " in result.output


def test_kmers_on_bundled_genome_matches_reference(runner, tmp_path):
    out = tmp_path / "k11.tsv"
    result = runner.invoke(cli, ["kmers", "-k", "11", "--canonical", "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert lines[0] == "kmer\tcount"
    words = [line.split("\t")[0] for line in lines[1:]]
    assert words == sorted(words)
    # Reference: numpy 2-bit rolling codes + bincount over the same genome.
    codes = read_fasta(data.genome_path())[0].codes.astype(np.int64)
    k = 11
    windows = np.lib.stride_tricks.sliding_window_view(codes, k)
    fwd = (windows * (4 ** np.arange(k - 1, -1, -1))).sum(axis=1)
    rev = ((3 - windows[:, ::-1]) * (4 ** np.arange(k - 1, -1, -1))).sum(axis=1)
    ref = np.bincount(np.minimum(fwd, rev), minlength=4**k)
    nz = np.flatnonzero(ref)
    expected = [f"{w}\t{c}" for w, c in zip(unpack(nz.astype(np.uint64), k), ref[nz])]
    assert lines[1:] == expected


def test_kmers_to_stdout_with_min_count(runner, tmp_path):
    fa = tmp_path / "x.fa"
    fa.write_text(">a\nAAAAAC\n>b\nAAC\n")
    result = runner.invoke(cli, ["kmers", "--genome", str(fa), "-k", "2", "--min-count", "2"])
    assert result.exit_code == 0
    assert result.output == "kmer\tcount\nAA\t5\nAC\t2\n"


def test_bad_fasta_is_one_line_exit_2(runner, tmp_path):
    fa = tmp_path / "bad.fa"
    fa.write_text(">a\nACGT\nAC@@@GT\n")
    result = runner.invoke(cli, ["kmers", "--genome", str(fa), "-k", "3"])
    assert result.exit_code == 2
    assert result.output.strip() == f"Error: {fa}: line 3: invalid character '@' in a sequence line (expected IUPAC nucleotide codes)"
    assert "Traceback" not in result.output


def test_k_out_of_range_is_a_usage_error(runner):
    result = runner.invoke(cli, ["kmers", "-k", "40"])
    assert result.exit_code == 2 and "40 is not in the range 1<=x<=31" in result.output


def test_info_on_fasta(runner, tmp_path):
    fa = tmp_path / "x.fa.gz"
    import gzip

    fa.write_bytes(gzip.compress(b">a desc\nGGccNN\n>b\nAT\n"))
    result = runner.invoke(cli, ["info", str(fa)])
    assert result.exit_code == 0, result.output
    fields = dict(line.split(None, 1) for line in result.output.strip().splitlines())
    assert fields["records"] == "2" and fields["total_bp"] == "8"
    assert fields["lengths"] == "a=6, b=2"
    assert float(fields["gc_fraction"]) == pytest.approx(4 / 6)
    assert float(fields["n_fraction"]) == pytest.approx(0.25)
    assert float(fields["softmasked_fraction"]) == pytest.approx(0.25)


def test_info_on_missing_path(runner, tmp_path):
    result = runner.invoke(cli, ["info", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "no such file or folder" in result.output
