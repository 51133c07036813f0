"""Both strands, annotation side: pooled codes, per-strand motif scores, a planted-site control."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from annotate_compare import TABLES, annotate_as_rank, assert_same_annotation, assert_same_tsv, random_records
from hypothesis import given, settings
from hypothesis import strategies as st

from genesae_fast.annotate.concepts import SparseActs
from genesae_fast.annotate.core import Config
from genesae_fast.annotate.strands import PooledSAE, pool_topk
from genesae_fast.models.base import GeneModel, TokenizedSequence
from genesae_fast.sequences import encode


def _codes(rng, n, k, F):
    idx = np.stack([rng.choice(F, k, replace=False) for _ in range(n)]) if n else np.zeros((0, k), np.int64)
    vals = rng.random((n, k)).astype(np.float32) * (rng.random((n, k)) > 0.2)  # some zeros
    return vals, idx


def _dense(vals, idx, F):
    return SparseActs.from_topk(vals, idx, F).dense()


@given(st.integers(0, 40), st.integers(1, 8), st.integers(0, 10), st.integers(0, 2**31))
@settings(max_examples=60, deadline=None)
def test_pool_topk_is_the_max_of_the_two_passes(n, k, extra, seed):
    rng = np.random.default_rng(seed)
    F = k + extra  # extra = 0: every feature in both passes (k = n)
    va, ia = _codes(rng, n, k, F)
    vb, ib = _codes(rng, n, k, F)
    vals, idx = pool_topk(va, ia, vb, ib)
    assert vals.shape == (n, 2 * k)
    pooled = SparseActs.from_topk(vals, idx, F)
    np.testing.assert_array_equal(pooled.dense(), np.maximum(_dense(va, ia, F), _dense(vb, ib, F)))
    for t in range(n):  # each feature at most once per token
        f = pooled.feat[pooled.ptr[t]:pooled.ptr[t + 1]]
        assert len(f) == len(set(f.tolist()))


def test_pooled_sae_codes_are_the_max_of_each_pass_and_reconstruct_each():
    import torch

    from genesae_fast.annotate.encode import encode_rows
    from genesae_fast.sae import TopKSAE

    torch.manual_seed(0)
    sae = TopKSAE(6, 20, 3).eval()
    x = np.random.default_rng(0).normal(size=(50, 6)).astype(np.float32)
    y = np.random.default_rng(1).normal(size=(50, 6)).astype(np.float32)
    pooled = PooledSAE(sae)
    assert pooled.config["d_in"] == 12 and pooled.config["n_latents"] == 20
    vals, idx, x_hat = encode_rows(pooled, np.concatenate([x, y], axis=1))
    va, ia, ha = encode_rows(sae, x)
    vb, ib, hb = encode_rows(sae, y)
    np.testing.assert_array_equal(_dense(vals, idx, 20), np.maximum(_dense(va, ia, 20), _dense(vb, ib, 20)))
    np.testing.assert_array_equal(x_hat, np.concatenate([ha, hb], axis=1))
    with torch.no_grad():  # the path of the streamed windows (normalize, then encode)
        v2, i2 = pooled.encode(pooled.normalize(torch.from_numpy(np.concatenate([x, y], axis=1))))
    np.testing.assert_array_equal(_dense(v2.numpy(), i2.numpy(), 20), _dense(vals, idx, 20))


# -- whole annotations ---------------------------------------------------------------------------
def _make(d, records, model="builtin", strands="both", n_motifs=8, latents=64, k=4, layer=2):
    import torch

    from genesae_fast.extract import extract_to_store
    from genesae_fast.motifs import load_motifs, write_meme
    from genesae_fast.sae import TopKSAE
    from genesae_fast.sequences import write_fasta
    from genesae_fast.store.strands import open_for_training

    d.mkdir(parents=True, exist_ok=True)
    write_fasta(records, d / "g.fa")
    extract_to_store(d / "g.fa", model, layer, d / "s.zarr", progress=False, strands=strands, workers=1)
    st_ = open_for_training(d / "s.zarr")
    torch.manual_seed(0)
    sae = TopKSAE(st_.d, latents, k)
    sae.input_mean.copy_(torch.as_tensor(st_.mean, dtype=torch.float32))
    sae.input_scale = float(st_.norm_scale)
    sae.save(d / "sae")
    if n_motifs:
        write_meme(load_motifs()[:n_motifs], d / "m.meme")
    return {"dir": d, "fasta": d / "g.fa", "store": d / "s.zarr", "sae": d / "sae", "motifs": d / "m.meme"}


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    rng = np.random.default_rng(11)
    return _make(tmp_path_factory.mktemp("both"), random_records(rng, [5000, 60, 2800], n_runs=2))


CFG = dict(min_active=3, gene_shifts=2, n_tracks=4, qvalue=1.0)


def _annotate(run, name, *, streamed=True, cfg=None, **kw):
    from genesae_fast.annotate import annotate
    from genesae_fast.annotate.folder import annotate_in_memory

    out = run["dir"] / name
    shutil.rmtree(out, ignore_errors=True)
    cfg = cfg or Config(**CFG, block_bp=1500)
    if streamed:
        annotate(run["store"], run["sae"], out, motifs=str(run["motifs"]), cfg=cfg, progress=False, **kw)
    else:
        annotate_in_memory(run["store"], run["sae"], out, motifs=str(run["motifs"]), cfg=cfg, **kw)
    return out


def test_both_strand_streamed_equals_in_memory(both):
    import json

    ref = _annotate(both, "mem", streamed=False)
    out = _annotate(both, "w2", workers=2)
    assert_same_annotation(ref, out)
    header = (out / "concepts.tsv").read_text().splitlines()[0].split("\t")
    assert header[-5:] == ["recall_plus", "recall_minus", "f1_plus", "f1_minus", "strand"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["strands"] == "both" and sum(summary["motif_best_feature_strand"].values()) == 8


class _Stop(Exception):
    pass


def test_interrupted_strand_pass_resumes_after_its_last_finished_block(both, monkeypatch):
    from genesae_fast.annotate import annotate, stream

    whole = _annotate(both, "strands_whole", workers=1)
    seen, resumed = [], []

    def stop(name, b):
        if name == "strands":
            seen.append(b)
            if len(seen) == 2:
                raise _Stop

    monkeypatch.setattr(stream, "BLOCK_HOOK", stop)
    out = both["dir"] / "strands_cut"
    with pytest.raises(_Stop):
        _annotate(both, out.name, workers=1, checkpoint_blocks=1)
    assert (both["dir"] / "strands_cut.partial" / ".work" / "state").is_dir() and not out.exists()
    monkeypatch.setattr(stream, "BLOCK_HOOK", lambda name, b: resumed.append((name, b)))
    annotate(both["store"], both["sae"], out, motifs=str(both["motifs"]), cfg=Config(**CFG, block_bp=1500),
             progress=False, workers=1, checkpoint_blocks=1)
    again = [b for name, b in resumed if name == "strands"]
    assert again and again[0] == seen[-1] + 1 and not set(again) & set(seen)
    # the passes before it were finished and do not run again; pass 3 (contexts) comes after it
    assert {name for name, _ in resumed} == {"strands", "contexts"}
    assert_same_annotation(whole, out)


def test_two_ranks_split_the_strand_pass_and_equal_one_process(both, tmp_path):
    import torch.multiprocessing as mp

    one = _annotate(both, "strands_one", workers=1)
    out = tmp_path / "two"
    mp.spawn(annotate_as_rank, args=(2, str(tmp_path / "pg"), both, str(out), Config(**CFG, block_bp=1500)),
             nprocs=2, join=True)
    assert_same_annotation(one, out)
    done = [{ln for ln in (tmp_path / f"two.blocks{r}").read_text().splitlines() if ln.startswith("strands")}
            for r in range(2)]
    assert done[0] and done[1] and not done[0] & done[1]


def test_forward_option_writes_todays_tables(both):
    from genesae_fast.store.strands import rc_store_path

    alone = both["dir"] / "alone"
    alone.mkdir(exist_ok=True)
    if not (alone / "s.zarr").exists():
        shutil.copytree(both["store"], alone / "s.zarr")
    one = dict(both, dir=alone, store=alone / "s.zarr")
    assert not (alone / "s.rc.zarr").exists() and rc_store_path(one["store"]) == str(alone / "s.rc.zarr")
    a = _annotate(one, "plain", workers=1)
    b = _annotate(both, "fwd", workers=1, strands="forward")
    assert_same_annotation(a, b)
    assert "strand" not in (b / "concepts.tsv").read_text().splitlines()[0].split("\t")


def _without(path, drop) -> list:
    lines = path.read_text().splitlines()
    head = lines[0].split("\t")
    keep = [i for i, h in enumerate(head) if h not in drop]
    return ["\t".join(r.split("\t")[i] for i in keep) for r in lines]


def test_pooling_a_pass_with_itself_gives_the_one_pass_tables(both, monkeypatch):
    # max(a, a) = a: every feature table equals the one-pass annotation (the neuron baseline
    # sees each neuron twice, so its columns are left out)
    from genesae_fast.store import ActivationStore
    from genesae_fast.store import strands as S

    def twice(path, strands="auto"):
        s = ActivationStore.open(path)
        return S.SideBySideStore(s, ActivationStore.open(path))

    one = _annotate(both, "fwd1", workers=1, strands="forward")
    monkeypatch.setattr(S, "open_for_annotation", twice)
    self_pooled = _annotate(both, "self", workers=1)
    for name in TABLES:
        drop = {"neuron", "neuron_f1", *("recall_plus", "recall_minus", "f1_plus", "f1_minus", "strand")}
        assert _without(one / name, drop) == _without(self_pooled / name, drop), name


# -- the planted-site control --------------------------------------------------------------------
PWM = np.array([[.9, .03, .04, .03], [.03, .03, .9, .04], [.04, .9, .03, .03], [.03, .03, .04, .9],
                [.9, .03, .04, .03], [.9, .04, .03, .03], [.03, .04, .03, .9], [.03, .9, .04, .03],
                [.04, .03, .9, .03], [.03, .04, .03, .9]])  # consensus AGCTAATCGT, not a palindrome


class PWMModel(GeneModel):
    """A deterministic causal toy LM: channel 0 = rectified log-odds PWM score of the window
    ENDING at each base (so on the + strand it fires only at + strand sites), channels 1-3 =
    one-hot A/C/G of the base."""

    def __init__(self):
        self.name, self.d_model, self.n_layers, self.device = "pwm", 4, 1, None
        self.identity = {"name": "pwm", "path": "", "sha256": "pwm-toy"}
        self.default_window, self.default_stride = 128, 96
        self.logodds = np.log2(PWM / 0.25)
        self.cut = 0.6 * self.logodds.max(1).sum()

    def tokenize(self, sequence: str) -> TokenizedSequence:
        codes = encode(sequence).astype(np.int64)
        pos = np.arange(len(codes), dtype=np.int64)
        return TokenizedSequence(codes, pos, pos + 1)

    def forward_windows(self, token_ids: np.ndarray, layer: int) -> np.ndarray:
        B, W = token_ids.shape
        w = self.logodds.shape[0]
        table = np.vstack([self.logodds.T, np.full((1, w), -4.0)])  # [5 codes, w]: N scores low
        score = np.full((B, W), -100.0)
        for i in range(w - 1, W):
            score[:, i] = sum(table[token_ids[:, i - w + 1 + j], j] for j in range(w))
        out = np.zeros((B, W, 4), np.float32)
        out[..., 0] = np.maximum(score - self.cut, 0.0)
        for c in range(3):
            out[..., c + 1] = token_ids == c
        return out


def _identity_sae(path):
    import torch

    from genesae_fast.sae import TopKSAE

    sae = TopKSAE(4, 4, 4)
    with torch.no_grad():
        for t in (sae.W_enc, sae.W_dec):
            t.copy_(torch.eye(4))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    sae.save(path)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """40 kbp of random sequence with 30 sites on each strand."""
    from genesae_fast.extract import extract_to_store
    from genesae_fast.motifs import Motif, write_meme
    from genesae_fast.sequences import write_fasta
    from genesae_fast.strands import reverse_complement

    d = tmp_path_factory.mktemp("planted")
    rng = np.random.default_rng(2)
    seq = list(rng.choice(list("ACGT"), 40_000))
    site = "AGCTAATCGT"
    for j, a in enumerate(range(500, 39_000, 640)):
        s = site if j % 2 == 0 else reverse_complement(site)
        seq[a:a + len(s)] = list(s)
    write_fasta([("chr", "".join(seq))], d / "g.fa")
    write_meme([Motif("PLANTED", "toy", PWM, 100.0)], d / "m.meme")
    _identity_sae(d / "sae")
    extract_to_store(d / "g.fa", PWMModel(), 1, d / "s.zarr", progress=False, workers=1, strands="both")
    return {"dir": d, "fasta": d / "g.fa", "store": d / "s.zarr", "sae": d / "sae", "motifs": d / "m.meme"}


def _row(path, **match) -> dict:
    lines = path.read_text().splitlines()
    head = lines[0].split("\t")
    for r in lines[1:]:
        row = dict(zip(head, r.split("\t")))
        if all(row[k] == str(v) for k, v in match.items()):
            return row
    raise AssertionError(f"no row {match} in {path}")


def test_planted_control_minus_sites_are_found_only_with_both_strands(planted, monkeypatch):
    from genesae_fast.store import ActivationStore
    from genesae_fast.store import strands as S

    cfg = Config(min_active=5, gene_shifts=1, n_tracks=1, qvalue=1.0, block_bp=5000, block=4000)
    fwd = _annotate(planted, "fwd", cfg=cfg, workers=1, strands="forward")
    both = _annotate(planted, "both", cfg=cfg, workers=1)
    r_fwd = float(_row(fwd / "feature_motif.tsv", feature=0, motif_id="PLANTED")["recall"])
    r_both = float(_row(both / "feature_motif.tsv", feature=0, motif_id="PLANTED")["recall"])
    # the concept's hits are 61 planted sites and ~11 weaker background PWM matches the toy
    # channel does not reach: recall ~0.85 is everything planted; one pass finds half of it
    assert 0.3 <= r_fwd <= 0.6 and r_both >= 0.8 and r_both >= r_fwd + 0.3
    row = _row(both / "concepts.tsv", concept="PLANTED")
    assert row["feature"] == "0" and row["strand"] == "both"
    assert float(row["recall_plus"]) >= 0.8 and float(row["recall_minus"]) >= 0.8
    assert_same_tsv(both / "concepts.tsv", _annotate(planted, "both_mem", cfg=cfg, streamed=False) / "concepts.tsv")
    # the forward pass on both strands' sites (a pass pooled with itself): - sites are missed
    monkeypatch.setattr(S, "open_for_annotation",
                        lambda p, strands="auto": S.SideBySideStore(ActivationStore.open(p), ActivationStore.open(p)))
    one = _row(_annotate(planted, "fwd_self", cfg=cfg, workers=1) / "concepts.tsv", concept="PLANTED")
    assert float(one["recall_plus"]) >= 0.8 and float(one["recall_minus"]) <= 0.1 and one["strand"] == "+"


def test_kmer_rc_pass_is_annotated_one_pass_by_auto_and_refused_by_both(tmp_path):
    from test_strands import KmerModel

    from genesae_fast.errors import InputError
    from genesae_fast.store import ActivationStore
    from genesae_fast.store.strands import open_for_annotation
    from genesae_fast.strands import ReverseComplementModel

    rng = np.random.default_rng(4)
    run = _make(tmp_path, random_records(rng, [1001, 502]), model=KmerModel(3), n_motifs=0, layer=1)
    rc = ActivationStore.open(tmp_path / "s.rc.zarr")
    assert rc.n_rows == ActivationStore.open(run["store"]).n_rows  # same count, other spans (1001 % 3 != 0)
    assert isinstance(open_for_annotation(run["store"], "auto"), ActivationStore)
    with pytest.raises(InputError, match="token coordinates differ .* use --strands forward"):
        open_for_annotation(run["store"], "both")
    assert ReverseComplementModel(KmerModel(3)).tokenize("ACGTA").bp_start.tolist() == [0, 2]


def test_report_says_which_strand(both):
    from genesae_fast.annotate import write_report

    out = both["dir"] / "w2"
    if not (out / "summary.json").exists():
        out = _annotate(both, "w2", workers=2)
    html = write_report(out).read_text()
    assert "motifs whose best feature reads both / + only / - only / neither" in html
    assert "+ sites (forward pass) vs - sites (reverse-complement pass)" in html and "■ - sites" in html
    one = _annotate(both, "fwd_r", workers=1, strands="forward")
    assert "reads both / + only" not in write_report(one).read_text()
