"""Both strands, extraction side: reverse complement, RC coordinates, the RC model, the RC store."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_extract_model import TinyModel

from genesae_fast.errors import InputError
from genesae_fast.models.base import GeneModel, TokenizedSequence
from genesae_fast.sequences import encode
from genesae_fast.strands import (ReverseComplementModel, check_strands, rc_spans, resolve_strands,
                                  reverse_complement, spec_reads_one_direction)

_PAIR = dict(zip("ACGTNRYKMSWBDHVacgtn", "TGCANYRMKSWVHDBtgcan"))


class KmerModel(GeneModel):
    """Non-overlapping k-mer tokens from the start of the string (a short last token kept),
    id = the k-mer's base-5 number; a causal running sum of embeddings as activations."""

    def __init__(self, k: int = 3, d: int = 4):
        self.k, self.d_model, self.n_layers, self.name = k, d, 1, f"kmer{k}"
        self.identity = {"name": self.name, "path": "", "sha256": f"kmer-{k}-{d}"}
        self.default_window, self.default_stride, self.device = 16, 12, None
        self.embed = np.random.default_rng(k).normal(size=(5 ** k + 1, d)).astype(np.float32)

    def tokenize(self, sequence: str) -> TokenizedSequence:
        codes = encode(sequence).astype(np.int64)
        starts = np.arange(0, len(codes), self.k, dtype=np.int64)
        ends = np.minimum(starts + self.k, len(codes))
        ids = np.array([int(sum(int(c) * 5 ** j for j, c in enumerate(codes[a:b]))) % (5 ** self.k + 1)
                        for a, b in zip(starts, ends)], dtype=np.int64)
        return TokenizedSequence(ids, starts, ends)

    def forward_windows(self, token_ids: np.ndarray, layer: int) -> np.ndarray:
        h = self.embed[token_ids]
        out = h.copy()
        out[:, 1:] += 0.5 * h[:, :-1]  # causal: a token sees itself and the one before
        return out.astype(np.float32)


def test_reverse_complement_iupac_case_and_involution():
    assert reverse_complement("ACGTNacgtn") == "nacgtNACGT"
    assert reverse_complement("RYKMSWBDHV") == "BDHVWSKMRY"
    assert reverse_complement("") == ""


@given(st.text(alphabet="ACGTNRYKMSWBDHVacgtn", max_size=60))
def test_reverse_complement_matches_a_per_base_reference(seq):
    assert reverse_complement(seq) == "".join(_PAIR[c] for c in reversed(seq))
    assert reverse_complement(reverse_complement(seq)) == seq


def _brute_spans(rc_start, rc_end, length):
    """+ spans by listing every base of every RC token and mapping it alone."""
    out = []
    for s, e in zip(rc_start, rc_end):
        bases = [length - 1 - j for j in range(s, e)]
        out.append((min(bases), max(bases) + 1))
    return out[::-1]


@given(st.lists(st.integers(1, 7), min_size=0, max_size=20), st.integers(0, 5))
def test_rc_spans_match_brute_force(widths, tail):
    ends = np.cumsum(widths).astype(np.int64)
    starts = ends - np.asarray(widths, np.int64)
    length = int(ends[-1]) + tail if widths else tail
    s, e = rc_spans(starts, ends, length)
    assert list(zip(s.tolist(), e.tolist())) == _brute_spans(starts, ends, length)
    assert np.all(np.diff(s) >= 0)


@pytest.mark.parametrize("model", [TinyModel(), KmerModel(3), KmerModel(4)], ids=["1bp", "3mer", "4mer"])
@settings(max_examples=25, deadline=None)
@given(seq=st.text(alphabet="ACGTN", min_size=0, max_size=50))
def test_rc_tokens_spell_the_minus_strand_at_their_plus_coordinates(model, seq):
    rc = ReverseComplementModel(model)
    t = rc.tokenize(seq)
    assert np.all(np.diff(t.bp_start) >= 0) and np.all(t.bp_end > t.bp_start)
    for tid, s, e in zip(t.token_ids, t.bp_start, t.bp_end):
        # the token is what the inner model makes of the - strand over these + bases
        assert model.tokenize(reverse_complement(seq[s:e])).token_ids[0] == tid or len(seq[s:e]) == 0
    inner = model.tokenize(reverse_complement(seq))
    assert sorted(zip(t.bp_start.tolist(), t.bp_end.tolist())) == _brute_spans(inner.bp_start, inner.bp_end, len(seq))


@pytest.mark.parametrize("model,layer", [(TinyModel(), 2), (KmerModel(3), 1)], ids=["1bp", "3mer"])
@pytest.mark.parametrize("n", [1, 7, 63, 200, 517])
def test_rc_model_activations_are_the_inner_model_on_the_reverse_complement(model, layer, n):
    seq = "".join(np.random.default_rng(n).choice(list("ACGTN"), n, p=[.24, .24, .24, .24, .04]))
    rc = ReverseComplementModel(model)
    got = np.concatenate([b.activations for b in rc.extract(seq, layer)])
    inner = np.concatenate([b.activations for b in model.extract(reverse_complement(seq), layer)])
    np.testing.assert_allclose(got, inner[::-1], rtol=1e-5, atol=1e-6)
    # start_token: the same values whatever token a call starts at
    tail = np.concatenate([b.activations for b in rc.extract(seq, layer, start_token=len(got) // 2)])
    np.testing.assert_array_equal(tail, got[len(got) // 2:])


def test_strands_option_values_and_auto():
    with pytest.raises(InputError, match="--strands 'up'"):
        check_strands("up")
    assert resolve_strands("auto", "builtin") == "both"
    assert resolve_strands("forward", "builtin") == "forward"
    assert resolve_strands("auto", TinyModel()) == "forward"  # says nothing: taken as bidirectional
    tiny = TinyModel()
    tiny.causal = True
    assert resolve_strands("auto", tiny) == "both"


@pytest.mark.parametrize("config,one_way", [({"model_type": "bert", "architectures": ["BertForMaskedLM"]}, False),
                                            ({"model_type": "gpt2"}, True),
                                            ({"model_type": "x", "architectures": ["XForCausalLM"]}, True),
                                            ({"model_type": "x", "is_decoder": True}, True)])
def test_hf_direction_from_config(tmp_path, config, one_way):
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert spec_reads_one_direction(str(tmp_path)) is one_way


# -- extraction into the RC store ---------------------------------------------------------------
@pytest.fixture
def genome(tmp_path):
    from genesae_fast.sequences import write_fasta

    rng = np.random.default_rng(3)
    recs = [(f"r{i}", "".join(rng.choice(list("ACGT"), n))) for i, n in enumerate([900, 1, 2500])]
    path = tmp_path / "g.fa"
    write_fasta(recs, path)
    return path, dict(recs)


def _arrays(path):
    from genesae_fast.store import ActivationStore

    s = ActivationStore.open(path)
    acts = np.concatenate([x for _, x in s.iter_rows(4096)])
    return s, acts, s.coordinates()


@pytest.mark.parametrize("model", [TinyModel(), KmerModel(3)], ids=["1bp", "3mer"])
def test_both_strands_extraction(tmp_path, genome, model):
    from genesae_fast.extract import extract_to_store
    from genesae_fast.store.strands import rc_store_path

    fasta, recs = genome
    one, both = tmp_path / "one.zarr", tmp_path / "both.zarr"
    extract_to_store(fasta, model, 1, one, progress=False, chunk_rows=512, workers=1)
    extract_to_store(fasta, model, 1, both, progress=False, chunk_rows=512, workers=1, strands="both")
    assert not (tmp_path / "one.rc.zarr").exists()
    s1, a1, c1 = _arrays(one)
    s2, a2, c2 = _arrays(both)
    np.testing.assert_array_equal(a1, a2)  # the forward store is the same with or without the RC pass
    assert all(np.array_equal(x, y) for x, y in zip(c1, c2))
    assert s1.attrs["stats"] == s2.attrs["stats"] and "strand" not in s2.attrs
    rc, arc, crc = _arrays(rc_store_path(both))
    assert rc.attrs["strand"] == "-" and rc.attrs["config"] != s2.attrs["config"]
    seq, bs, be, _ = crc
    for i, name in enumerate(s2.sequence_names):  # row by row against the inner model on each RC record
        mine = np.asarray(seq) == i
        ref = [b.activations for b in model.extract(reverse_complement(recs[name]), 1)]
        ref = np.concatenate(ref)[::-1] if ref else np.zeros((0, model.d_model), np.float32)
        np.testing.assert_allclose(arc[mine], ref.astype(np.float16).astype(np.float32), rtol=2e-3, atol=2e-3)
        t = ReverseComplementModel(model).tokenize(recs[name])
        np.testing.assert_array_equal(np.asarray(bs)[mine], t.bp_start)
        np.testing.assert_array_equal(np.asarray(be)[mine], t.bp_end)


def test_rc_extraction_resumes_and_workers_give_the_same_bytes(tmp_path, genome):
    from genesae_fast.extract import extract_to_store
    from genesae_fast.store.strands import rc_store_path

    fasta, _ = genome
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    extract_to_store(fasta, TinyModel(), 2, a, progress=False, chunk_rows=256, workers=1, strands="both")
    extract_to_store(fasta, TinyModel(), 2, b, progress=False, chunk_rows=256, workers=2, strands="both")
    _, x, _ = _arrays(rc_store_path(a))
    _, y, _ = _arrays(rc_store_path(b))
    np.testing.assert_array_equal(x, y)
    # a rerun finds both stores complete and leaves them as they are
    before = (tmp_path / "a.rc.zarr" / "zarr.json").read_bytes()
    extract_to_store(fasta, TinyModel(), 2, a, progress=False, chunk_rows=256, workers=1, strands="both")
    assert (tmp_path / "a.rc.zarr" / "zarr.json").read_bytes() == before


def test_companion_checks(tmp_path, genome):
    from genesae_fast.extract import extract_to_store
    from genesae_fast.store import ActivationStore
    from genesae_fast.store.strands import companion, rc_store_path

    fasta, _ = genome
    s = tmp_path / "s.zarr"
    extract_to_store(fasta, TinyModel(), 1, s, progress=False, workers=1)
    fwd = ActivationStore.open(s)
    assert companion(fwd, "auto") is None
    with pytest.raises(InputError, match=r"s\.rc\.zarr: no reverse-complement store"):
        companion(fwd, "both")
    # a forward store of another layer where the RC store should be: ignored by auto, refused by both
    extract_to_store(fasta, TinyModel(), 2, rc_store_path(s), progress=False, workers=1)
    assert companion(fwd, "auto") is None
    with pytest.raises(InputError, match="not the reverse-complement pass"):
        companion(fwd, "both")
    extract_to_store(fasta, ReverseComplementModel(TinyModel()), 1, rc_store_path(s), progress=False, workers=1,
                     overwrite=True)
    assert companion(fwd, "auto").attrs["strand"] == "-"
    from genesae_fast.store import describe

    assert describe(rc_store_path(s))["strand"] == "-" and "strand" not in describe(s)
    assert companion(fwd, "forward") is None


def test_cli_strands_options(tmp_path, genome):
    from click.testing import CliRunner

    from genesae_fast.cli import cli

    fasta, _ = genome
    out = tmp_path / "s.zarr"
    r = CliRunner().invoke(cli, ["extract", "--genome", str(fasta), "--out", str(out), "--layer", "1",
                                 "--strands", "both", "--workers", "1", "-q"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "s.rc.zarr" / "zarr.json").exists()
    r = CliRunner().invoke(cli, ["extract", "--genome", str(fasta), "--out", str(out), "--strands", "up"])
    assert r.exit_code == 2 and "--strands" in r.output
    one = tmp_path / "one.zarr"
    r = CliRunner().invoke(cli, ["extract", "--genome", str(fasta), "--out", str(one), "--layer", "1",
                                 "--workers", "1", "-q"])
    assert r.exit_code == 0 and not (tmp_path / "one.rc.zarr").exists()  # forward by default
    r = CliRunner().invoke(cli, ["train", "--store", str(one), "--out", str(tmp_path / "sae"), "--strands", "both",
                                 "--quiet"])
    assert r.exit_code == 2 and "one.rc.zarr: no reverse-complement store" in r.output
    assert "Traceback" not in r.output
    for cmd in ("extract", "train", "annotate", "run"):
        assert "--strands" in CliRunner().invoke(cli, [cmd, "--help"]).output
