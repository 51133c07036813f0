"""Motif files: the shipped JASPAR set, MEME/JASPAR/TRANSFAC round trips, bad files refused."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genesae_fast.errors import InputError
from genesae_fast.motifs import (
    Motif,
    load_motifs,
    parse_jaspar,
    parse_meme,
    parse_transfac,
    shuffle_columns,
    write_jaspar,
    write_meme,
    write_transfac,
)


def _random_motif(rng, i, width=None):
    w = int(width or rng.integers(1, 34))
    counts = rng.integers(0, 50, size=(w, 4)).astype(float)
    counts[:, rng.integers(0, 4)] += 1  # no empty column
    return Motif(id=f"M{i}.1", alt_id=f"TF{i}", probs=counts / counts.sum(1, keepdims=True), nsites=float(rng.integers(1, 500)))


def test_default_set_matches_pyjaspar():
    """The shipped file is JASPAR 2024 CORE vertebrates (latest versions) as pyjaspar has it."""
    from genesae_fast.motifs import _load_pyjaspar  # pyjaspar: a dev dependency

    shipped = load_motifs("jaspar2024:CORE:vertebrates")
    fresh = sorted(_load_pyjaspar("2024", "CORE", "vertebrates", "test"), key=lambda m: m.id)
    assert [m.id for m in shipped] == [m.id for m in fresh]
    assert [m.alt_id for m in shipped] == [m.alt_id for m in fresh]
    for a, b in zip(shipped, fresh, strict=True):
        assert a.probs.shape == b.probs.shape
        np.testing.assert_allclose(a.probs, b.probs, atol=5.1e-7, rtol=0)
        assert a.nsites == pytest.approx(b.nsites, rel=1e-9)
    # latest version only: one matrix per base ID
    bases = [m.id.rsplit(".", 1)[0] for m in shipped]
    assert len(set(bases)) == len(bases)


def test_spec_is_case_insensitive_and_other_releases_use_pyjaspar():
    a = load_motifs("JASPAR2024:core:Vertebrates")
    assert len(a) == len(load_motifs())
    plants = load_motifs("jaspar2022:CORE:plants")
    assert plants and all(m.probs.shape[1] == 4 for m in plants)
    with pytest.raises(InputError, match="JASPAR1999"):
        load_motifs("jaspar1999:CORE:vertebrates")


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 4))
def test_round_trip_every_format(tmp_path_factory, seed, n):
    rng = np.random.default_rng(seed)
    motifs = [_random_motif(rng, i) for i in range(n)]
    d = tmp_path_factory.mktemp("rt")
    for writer, name, tol in ((write_meme, "m.meme", 5.1e-7), (write_jaspar, "m.jaspar", 1e-9),
                              (write_transfac, "m.transfac", 1e-9)):
        path = d / name
        writer(motifs, path)
        back = load_motifs(path)
        assert [m.id for m in back] == [m.id for m in motifs]
        assert [m.alt_id for m in back] == [m.alt_id for m in motifs]
        for a, b in zip(motifs, back, strict=True):
            np.testing.assert_allclose(b.probs, a.probs, atol=tol, rtol=0)
            assert b.nsites == pytest.approx(a.nsites, rel=1e-9)


def test_jaspar_pfm_without_letters_and_headerless(tmp_path):
    p = tmp_path / "MA0004.1.pfm"
    p.write_text(">MA0004.1 Arnt\n4 19 0 0 0 0\n16 0 20 0 0 0\n0 1 0 20 0 20\n0 0 0 0 20 0\n")
    (m,) = load_motifs(p)
    assert (m.id, m.alt_id, m.width, m.nsites) == ("MA0004.1", "Arnt", 6, 20.0)
    np.testing.assert_allclose(m.probs[0], [0.2, 0.8, 0, 0])
    q = tmp_path / "bare.pfm"
    q.write_text("4 19\n16 0\n0 1\n0 0\n")
    (m2,) = load_motifs(q)
    assert m2.id == "bare" and m2.width == 2


def test_meme_rows_are_renormalised_like_meme():
    text = "MEME version 4\n\nALPHABET= ACGT\n\nMOTIF a\nletter-probability matrix: alength= 4 w= 2\n" \
           "0.25 0.25 0.25 0.2501\n0.1 0.2 0.3 0.4\n"
    (m,) = parse_meme(text)
    assert m.nsites is None
    np.testing.assert_allclose(m.probs.sum(1), 1.0, rtol=0, atol=1e-15)


def test_shuffle_columns_permutes_rows(rng):
    m = _random_motif(rng, 0, width=12)
    s = shuffle_columns(m, rng)
    assert s.id != m.id and s.nsites == m.nsites
    assert sorted(map(tuple, s.probs)) == sorted(map(tuple, m.probs))
    assert m.probs.shape == s.probs.shape


MEME_HEAD = "MEME version 4\n\nALPHABET= ACGT\n\nstrands: + -\n\n"


@pytest.mark.parametrize(
    "text, fmt, pieces",
    [
        (MEME_HEAD + "MOTIF bad1\nletter-probability matrix: alength= 4 w= 2\n0.5 0.5 0.5 0.5\n0.25 0.25 0.25 0.25\n",
         "meme", ["bad1", ":9:", "probability"]),
        (MEME_HEAD + "MOTIF bad2\nletter-probability matrix: alength= 4 w= 1\n0.5 x 0.25 0.25\n", "meme", ["bad2", ":9:"]),
        (MEME_HEAD + "MOTIF bad3\nletter-probability matrix: alength= 4 w= 1\n0.5 0.5 0.0\n", "meme", ["bad3", "3 values"]),
        (MEME_HEAD + "MOTIF empty1\nletter-probability matrix: alength= 4 w= 0\n\nMOTIF x\n", "meme", ["empty1", "empty"]),
        ("MEME version 4\n\nALPHABET= ACDEFGHIKLMNPQRSTVWY\n\nMOTIF p\n", "meme", ["alphabet", ":3:"]),
        (MEME_HEAD + "MOTIF prot\nletter-probability matrix: alength= 20 w= 1\n", "meme", ["prot", "alength"]),
        (MEME_HEAD + "MOTIF w3\nletter-probability matrix: alength= 4 w= 3\n0.25 0.25 0.25 0.25\n\n", "meme", ["w3", "w= 3"]),
        (MEME_HEAD + "MOTIF neg\nletter-probability matrix: alength= 4 w= 1\n-0.25 0.75 0.25 0.25\n", "meme", ["neg", ":9:"]),
        (">J1 X\nA [1 2]\nC [1 2]\nG [1 2]\n", "jaspar", ["J1", "3 count rows"]),
        (">J2 X\nA [1 -2]\nC [1 2]\nG [1 2]\nT [1 2]\n", "jaspar", ["J2", ":2:", "negative"]),
        (">J3 X\nA [1 2]\nC [1 x]\nG [1 2]\nT [1 2]\n", "jaspar", ["J3", ":3:"]),
        (">J4 X\n>J5 Y\n", "jaspar", ["J4", "empty"]),
        (">J6 X\nA [1 0]\nC [1 0]\nG [1 0]\nT [1 0]\n", "jaspar", ["J6", "column 2"]),
        ("AC T1\nXX\nP0 A C G U\n01 1 2 3 4\nXX\n//\n", "transfac", ["T1", ":3:", "A C G T"]),
        ("AC T2\nXX\nP0 A C G T\n01 1 2 x 4\nXX\n//\n", "transfac", ["T2", ":4:"]),
        ("AC T3\nXX\nP0 A C G T\nXX\n//\n", "transfac", ["T3", "empty"]),
        # issue 14: NaN/inf/overflow and lenient number syntax are refused, never warned about
        (MEME_HEAD + "MOTIF wn\nletter-probability matrix: alength= 4 w= nan\n0.25 0.25 0.25 0.25\n", "meme",
         ["wn", ":8:", "w= 'nan' is not a finite number"]),
        (MEME_HEAD + "MOTIF wi\nletter-probability matrix: alength= 4 w= inf\n0.25 0.25 0.25 0.25\n", "meme",
         ["wi", ":8:", "w= 'inf'"]),
        (MEME_HEAD + "MOTIF wf\nletter-probability matrix: alength= 4 w= 1.5\n0.25 0.25 0.25 0.25\n", "meme",
         ["wf", "w= 1.5 is not a non-negative integer"]),
        (MEME_HEAD + "MOTIF wneg\nletter-probability matrix: alength= 4 w= -2\n0.25 0.25 0.25 0.25\n", "meme",
         ["wneg", "w= -2"]),
        (MEME_HEAD + "MOTIF ns\nletter-probability matrix: alength= 4 w= 1 nsites= nan\n0.25 0.25 0.25 0.25\n",
         "meme", ["ns", "nsites= 'nan'"]),
        (MEME_HEAD + "MOTIF ns2\nletter-probability matrix: alength= 4 w= 1 nsites= -3\n0.25 0.25 0.25 0.25\n",
         "meme", ["ns2", "nsites= -3 is negative"]),
        (MEME_HEAD + "MOTIF rn\nletter-probability matrix: alength= 4 w= 1\n0.25 nan 0.25 0.25\n", "meme",
         ["rn", ":9:", "not finite numbers"]),
        (MEME_HEAD + "MOTIF ru\nletter-probability matrix: alength= 4 w= 1\n0.2_5 0.25 0.25 0.25\n", "meme",
         ["ru", ":9:"]),
        (">J7 X\nA [1e308 1]\nC [1e308 1]\nG [1 2]\nT [1 2]\n", "jaspar", ["J7", "column 1", "overflow"]),
        (">J8 X\nA [nan 1]\nC [1 1]\nG [1 2]\nT [1 2]\n", "jaspar", ["J8", ":2:", "not finite counts"]),
        (">J9 X\nA [inf 1]\nC [1 1]\nG [1 2]\nT [1 2]\n", "jaspar", ["J9", ":2:"]),
        (">J10 X\nA [1e400 1]\nC [1 1]\nG [1 2]\nT [1 2]\n", "jaspar", ["J10", ":2:"]),
        (">J11 X\nA [1_0 1]\nC [1 1]\nG [1 2]\nT [1 2]\n", "jaspar", ["J11", ":2:"]),
        (">J12 X\nA [1 1 1]\nC [1 1]\nG [1 2]\nT [1 2]\n", "jaspar", ["J12", "different lengths"]),
        ("AC T4\nXX\nP0 A C G T\n01 1e308 1e308 1 1\nXX\n//\n", "transfac", ["T4", "overflow"]),
        ("AC T5\nXX\nP0 A C G T\n01 1 nan 1 1\nXX\n//\n", "transfac", ["T5", ":4:"]),
        ("AC T6\nXX\nP0 A C G T\n01 1 -inf 1 1\nXX\n//\n", "transfac", ["T6", ":4:"]),
        ("AC T7\nXX\nP0 A C G T\n01 1 2 3\nXX\n//\n", "transfac", ["T7", ":4:", "not 4 finite"]),
        ("AC T8\nXX\nP0 A C G T\n01 1 2 3 4 5\nXX\n//\n", "transfac", ["T8", ":4:"]),
        ("AC T9\nXX\nP0 A C G T\n01 1 -2 3 4\nXX\n//\n", "transfac", ["T9", ":4:"]),
    ],
)
def test_bad_files_are_refused_with_one_line(tmp_path, text, fmt, pieces):
    path = tmp_path / f"bad.{fmt}"
    path.write_text(text)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused outright, no warning first
        with pytest.raises(InputError) as info:
            load_motifs(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    for piece in pieces:
        assert piece in msg, (piece, msg)


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(InputError, match="no such motif file"):
        load_motifs(tmp_path / "nope.meme")
    p = tmp_path / "junk.txt"
    p.write_text("hello world\n")
    with pytest.raises(InputError, match="not a MEME, JASPAR or TRANSFAC"):
        load_motifs(p)
    with pytest.raises(InputError, match="directory"):
        load_motifs(tmp_path)


def test_parsers_accept_their_own_examples():
    (t,) = parse_transfac("AC MA0004.1\nXX\nID Arnt\nXX\nP0 A C G T\n01 4 16 0 0\n02 19 0 1 0\nXX\n//\n")
    assert (t.id, t.alt_id, t.width) == ("MA0004.1", "Arnt", 2)
    (j,) = parse_jaspar(">MA0004.1\tArnt\nA  [ 4 19 ]\nC  [16 0 ]\nG  [ 0 1 ]\nT  [ 0 0 ]\n")
    np.testing.assert_allclose(j.probs, t.probs)


def test_transfac_consensus_column_and_tiny_exponents_are_fine():
    (t,) = parse_transfac("AC T\nXX\nP0 A C G T\n01 1 2 3 4 N\n02 1e-3 0 0 1E+1 A\nXX\n//\n")
    np.testing.assert_allclose(t.probs[0], [0.1, 0.2, 0.3, 0.4])
    text = MEME_HEAD + "MOTIF e\nletter-probability matrix: alength= 4 w= 1 nsites= 7 E= 1e-1500\n0.1 0.2 0.3 0.4\n"
    (m,) = parse_meme(text)
    assert m.nsites == 7.0 and m.width == 1


def test_meme_background_must_be_finite(tmp_path):
    from genesae_fast.motifs import read_meme_background

    p = tmp_path / "bg.meme"
    p.write_text("MEME version 4\n\nBackground letter frequencies\nA 0.3 C 0.2 G 0.2 T 0.3\n")
    assert read_meme_background(p) == [0.3, 0.2, 0.2, 0.3]
    for bad in ("A nan C 0.2 G 0.2 T 0.3", "A 0.3 C inf G 0.2 T 0.3", "A -1 C 0.2 G 0.2 T 0.3", "A 0.3 C 0.2"):
        p.write_text(f"MEME version 4\n\nBackground letter frequencies\n{bad}\n")
        with pytest.raises(InputError, match="background letter frequencies"):
            read_meme_background(p)
