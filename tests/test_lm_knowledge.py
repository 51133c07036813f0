""""The LM knows this concept": the accumulator against a brute-force reference, block by
block as the streamed pass runs it, the concepts.tsv columns, the report section, and a toy
LM whose bits are low exactly at planted sites."""
from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from annotate_compare import make_store, random_records
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genesae_fast.annotate import lm_knowledge as LK
from genesae_fast.annotate.core import Config, Genome


# ------------------------------------------------------------------ brute-force reference
def reference_rows(bits: np.ndarray, offsets, lengths, concepts: list) -> list:
    """The module docstring's definition, one site and one base at a time."""
    rows = []
    for starts, ends in concepts:
        deltas, sites, flanks = [], [], []
        for s, e in zip(starts, ends):
            r = max(i for i in range(len(offsets)) if offsets[i] <= s and lengths[i] > 0)
            rlo, rhi = offsets[r], offsets[r] + lengths[r]
            inside = {p for a, b in zip(starts, ends) for p in range(a, b)}
            site = [bits[p] for p in range(s, e) if not math.isnan(bits[p])]
            fl = min(e - s, LK.FLANK_MAX_BP)
            around = list(range(s - LK.FLANK_GAP_BP - fl, s - LK.FLANK_GAP_BP)) + list(
                range(e + LK.FLANK_GAP_BP, e + LK.FLANK_GAP_BP + fl))
            flank = [bits[p] for p in around if rlo <= p < rhi and p not in inside and not math.isnan(bits[p])]
            if site and flank:
                sites.append(sum(site) / len(site))
                flanks.append(sum(flank) / len(flank))
                deltas.append(sites[-1] - flanks[-1])
        n = len(deltas)
        row = {"lm_sites": n}
        if n:
            row.update(lm_bits_site=np.mean(sites), lm_bits_flank=np.mean(flanks), lm_bits_delta=np.mean(deltas))
        if n >= 2:
            se = np.std(deltas, ddof=1) / math.sqrt(n)
            row["lm_bits_delta_ci"] = 1.96 * se
        rows.append(row)
    return rows


def blockwise(bits: np.ndarray, genome: Genome, concepts: list, block: int) -> LK.LMKnowledge:
    """The streamed pass's arithmetic without a store: each block sees only its window."""
    G = bits.shape[0]
    longest = max([int(np.max(np.asarray(e) - np.asarray(s))) for s, e in concepts if len(s)] + [1])
    R = LK.reach(longest)
    acc = LK.LMKnowledge.empty([("c", str(i)) for i in range(len(concepts))])
    for g0 in range(0, G, block):
        g1 = min(g0 + block, G)
        lo, hi = max(g0 - R, 0), min(g1 + R, G)
        near = []
        for s, e in concepts:
            s, e = np.asarray(s, np.int64), np.asarray(e, np.int64)
            keep = (s >= lo - R) & (s < hi)
            near.append((s[keep], e[keep]))
        acc = acc.merge(LK.LMKnowledge(acc.keys, LK.window_sums(bits[lo:hi], lo, genome, near, g0, g1)))
    return acc


@st.composite
def toy_genomes(draw):
    lengths = draw(st.lists(st.integers(0, 120), min_size=1, max_size=4))
    G = sum(lengths)
    if G == 0:
        lengths[0] = G = 30
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    bits = rng.gamma(2.0, 1.0, G).astype(np.float32)
    bits[rng.random(G) < draw(st.sampled_from([0.0, 0.1, 0.5]))] = np.nan
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    concepts = []
    for _ in range(draw(st.integers(1, 3))):
        starts, ends = [], []
        for _ in range(draw(st.integers(0, 12))):
            r = int(rng.choice([i for i, n in enumerate(lengths) if n > 0]))
            L = int(rng.integers(1, min(15, lengths[r]) + 1))
            s = int(offsets[r] + rng.integers(0, lengths[r] - L + 1))
            starts.append(s)
            ends.append(s + L)
        order = np.argsort(starts, kind="stable")
        concepts.append((np.asarray(starts, np.int64)[order], np.asarray(ends, np.int64)[order]))
    genome = Genome([f"r{i}" for i in range(len(lengths))], np.zeros(G, np.uint8), offsets,
                    np.asarray(lengths, np.int64))
    return bits, genome, concepts, draw(st.integers(1, 150))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(toy_genomes())
def test_accumulator_equals_brute_force_and_blocks_equal_whole(case):
    bits, genome, concepts, block = case
    whole = LK.LMKnowledge([("c", str(i)) for i in range(len(concepts))],
                           LK.window_sums(bits, 0, genome, concepts, 0, bits.shape[0]))
    # any block size gives the same integer sums (what workers, ranks and resumes rely on)
    assert np.array_equal(blockwise(bits, genome, concepts, block).sums, whole.sums)
    ref = reference_rows(bits.astype(np.float64), genome.offsets, genome.lengths, concepts)
    for key, want in zip(whole.keys, ref):
        got = whole.table()[key]
        assert got["lm_sites"] == want["lm_sites"]
        for col in ("lm_bits_site", "lm_bits_flank", "lm_bits_delta", "lm_bits_delta_ci"):
            if col in want:
                assert got[col] == pytest.approx(want[col], abs=1e-5), col
            else:
                assert math.isnan(got[col]), col


def test_concept_row_statistics_and_verdict():
    # 50 sites, each 0.5 bits cheaper than its flanks, with spread: known
    rng = np.random.default_rng(3)
    site = rng.normal(1.5, 0.2, 50)
    flank = site + 0.5 + rng.normal(0, 0.1, 50)
    row = LK.concept_row(LK.fold_sites(site, flank))
    d = site - flank
    assert row["lm_sites"] == 50 and row["lm_bits_delta"] == pytest.approx(d.mean(), abs=1e-5)
    assert row["lm_z"] == pytest.approx(d.mean() / (d.std(ddof=1) / math.sqrt(50)), rel=1e-4)
    assert row["lm_knows"] == 1
    # a small drop (the 1.947 vs 1.961 bits) is not "knows", however many sites
    row = LK.concept_row(LK.fold_sites(site, site + 0.014 + rng.normal(0, 0.01, 50)))
    assert row["lm_z"] < -3 and row["lm_knows"] == 0
    # a large drop on two noisy sites is not significant; nine identical drops are too few;
    # one site has no interval; none: NA
    assert LK.concept_row(LK.fold_sites(np.array([0.0, 2.0]), np.array([2.0, 2.1])))["lm_knows"] == 0
    few = LK.concept_row(LK.fold_sites(np.linspace(0.5, 0.6, 9), np.linspace(2.0, 2.1, 9)))
    assert few["lm_z"] < -3 and few["lm_bits_delta"] < -1 and few["lm_knows"] == 0
    assert LK.concept_row(LK.fold_sites(np.linspace(0.5, 0.6, 10), np.linspace(2.0, 2.1, 10)))["lm_knows"] == 1
    one = LK.concept_row(LK.fold_sites(np.array([0.0]), np.array([2.0])))
    assert one["lm_sites"] == 1 and math.isnan(one["lm_z"]) and one["lm_knows"] == 0
    none = LK.concept_row(LK.fold_sites(np.array([np.nan]), np.array([2.0])))
    assert none["lm_sites"] == 0 and math.isnan(none["lm_bits_delta"])


# ------------------------------------------------------------------ annotation folders
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    rng = np.random.default_rng(11)
    return make_store(tmp_path_factory.mktemp("lmk"), random_records(rng, [5000, 1200, 30], n_runs=2))


def _annotate(run, name, **kw):
    from genesae_fast.annotate import annotate

    out = run["dir"] / name
    shutil.rmtree(out, ignore_errors=True)
    annotate(run["store"], run["sae"], out, motifs=str(run["motifs"]), cfg=Config(min_active=3, gene_shifts=2,
             block_bp=1500), progress=False, workers=1, **kw)
    return out


def test_concepts_tsv_has_the_columns_and_the_report_the_section(run):
    from genesae_fast.annotate import write_report
    from genesae_fast.annotate.folder import read_tsv

    out = _annotate(run, "ann")
    cs = read_tsv(out / "concepts.tsv")
    for col in LK.COLUMNS:
        assert col in cs
    measured = [i for i, n in enumerate(cs["lm_sites"]) if n not in ("NA", "0")]
    assert len(measured) >= 5  # motifs and gene concepts were measured
    assert {cs["kind"][i] for i in measured} == {"motif", "gene"}
    for i in measured:  # delta = site - flank
        assert float(cs["lm_bits_delta"][i]) == pytest.approx(
            float(cs["lm_bits_site"][i]) - float(cs["lm_bits_flank"][i]), abs=2e-5)
    info = json.loads((out / "summary.json").read_text())["lm_knowledge"]
    assert info["concepts_measured"] == len(measured)
    page = write_report(out).read_text()
    assert "Does the LM know the concepts?" in page and "bits at flanks" in page


def test_without_lm_bits_the_columns_are_na_and_the_reason_is_given(run, tmp_path):
    from genesae_fast.annotate import write_report
    from genesae_fast.annotate.folder import read_tsv
    from genesae_fast.extract import extract_to_store

    plain = tmp_path / "plain.zarr"
    extract_to_store(run["fasta"], "builtin", None, plain, progress=False)
    out = _annotate(dict(run, store=plain, dir=tmp_path), "ann")
    cs = read_tsv(out / "concepts.tsv")
    assert set(cs["lm_bits_delta"]) == {"NA"}
    why = json.loads((out / "summary.json").read_text())["lm_knowledge"]["absent"]
    assert "not asked for" in why
    assert "Not measured: not asked for" in write_report(out).read_text()


# ------------------------------------------------------------------ a toy LM that knows one motif
class PlantedLM:
    """Character tokens; bits ~1.5-2.3 everywhere, 0.3 on the bases of every exact copy of
    ``site`` inside the window (a model that learned that motif and nothing else)."""

    def __new__(cls, site: str):
        import torch

        from genesae_fast.models.base import GeneModel
        from genesae_fast.models.builtin import tokenize_bases
        from genesae_fast.sequences import encode

        class _Model(GeneModel):
            name, d_model, n_layers = "planted", 8, 1
            identity = {"name": "planted", "path": "", "sha256": "planted-" + site}
            default_window, default_stride, device = 512, 384, torch.device("cpu")
            motif = np.asarray(encode(site), np.int64)

            def tokenize(self, sequence):
                return tokenize_bases(sequence)

            def forward_windows(self, token_ids, layer):
                B, W = token_ids.shape
                eye = np.eye(8, dtype=np.float32)
                shifted = np.concatenate([np.full((B, 1), 4), token_ids[:, :-1]], axis=1)
                return eye[token_ids] + 0.5 * eye[(shifted + 3) % 8]

            def lm_bits_unavailable(self):
                return None

            def forward_windows_bits(self, token_ids, layer):
                prev = np.concatenate([np.full((token_ids.shape[0], 1), 4), token_ids[:, :-1]], axis=1)
                bits = (1.5 + ((token_ids * 7 + prev * 3) % 5) / 5.0).astype(np.float32)
                L = self.motif.shape[0]
                for b in range(token_ids.shape[0]):
                    for t in range(token_ids.shape[1] - L + 1):
                        if np.array_equal(token_ids[b, t:t + L], self.motif):
                            bits[b, t:t + L] = 0.3
                bits[:, 0] = np.nan
                bits[token_ids == 4] = np.nan
                return self.forward_windows(token_ids, layer), bits

        return _Model()


def _consensus(motif) -> str:
    return "".join("ACGT"[i] for i in np.argmax(motif.probs, axis=1))


def test_toy_lm_knows_the_planted_motif_and_not_the_decoy(tmp_path):
    import torch

    from genesae_fast.annotate import annotate
    from genesae_fast.annotate.folder import read_tsv
    from genesae_fast.extract import extract_to_store
    from genesae_fast.motifs import load_motifs, write_meme
    from genesae_fast.sae import TopKSAE
    from genesae_fast.sequences import write_fasta
    from genesae_fast.store import ActivationStore

    motifs = [m for m in load_motifs() if 8 <= m.probs.shape[0] <= 12]
    planted, decoy = motifs[0], motifs[5]
    site = _consensus(planted)
    rng = np.random.default_rng(5)
    seq = np.array(list("ACGT"))[rng.integers(0, 4, 30_000)]
    for p in rng.choice(np.arange(100, 29_800, 97), 120, replace=False):
        seq[p:p + len(site)] = list(site)
    write_fasta([("toy", "".join(seq))], tmp_path / "g.fa")
    store = extract_to_store(tmp_path / "g.fa", PlantedLM(site), 1, tmp_path / "s.zarr", progress=False,
                             workers=1, lm_bits=True)
    st_ = ActivationStore.open(store)
    torch.manual_seed(0)
    sae = TopKSAE(st_.d, 16, 2)
    sae.input_mean.copy_(torch.as_tensor(st_.mean, dtype=torch.float32))
    sae.input_scale = float(st_.norm_scale)
    sae.save(tmp_path / "sae")
    write_meme([planted, decoy], tmp_path / "m.meme")
    annotate(store, tmp_path / "sae", tmp_path / "ann", motifs=str(tmp_path / "m.meme"),
             cfg=Config(min_active=3, gene_shifts=2, block_bp=7000, pvalue=1e-3), progress=False, workers=1)
    cs = read_tsv(tmp_path / "ann" / "concepts.tsv")
    row = {c: i for i, c in enumerate(cs["concept"])}
    p, d = row[planted.id], row[decoy.id]
    # p <= 1e-3: the decoy has background hits enough to measure (and so has the planted motif)
    assert int(cs["lm_sites"][p]) >= 130 and int(cs["lm_sites"][d]) >= 30
    assert cs["lm_knows"][p] == "1" and float(cs["lm_bits_delta"][p]) < -0.5
    assert cs["lm_knows"][d] == "0" and abs(float(cs["lm_bits_delta"][d])) < 0.2
    # gene concepts (pyrodigal's calls on random sequence, if any) are not known either
    assert all(cs["lm_knows"][i] in ("0", "NA") for i, k in enumerate(cs["kind"]) if k == "gene")


def test_base_bits_spread_a_token_over_its_bases(tmp_path):
    """Multi-base tokens (k-mers, BPE) share their bits evenly; a window cuts tokens."""
    from genesae_fast.store import ActivationStore
    from genesae_fast.store.writer import StoreWriter

    spans = [(0, 3), (3, 6), (6, 7), (7, 11), (0, 2), (2, 5)]  # two records: 11 and 5 bp
    seq = np.array([0, 0, 0, 0, 1, 1], np.int32)
    bits = np.array([3.0, np.nan, 2.0, 6.0, 1.0, 0.3], np.float32)
    genome_attrs = {"sequences": [{"name": "a", "length": 11, "row_start": 0, "row_end": 4},
                                  {"name": "b", "length": 5, "row_start": 4, "row_end": 6}]}
    w = StoreWriter.create(tmp_path / "s.zarr", n_rows=6, d=2, dtype="float32", config={"t": 1},
                           attrs={"genome": genome_attrs}, chunk_rows=4, lm_bits=True)
    w.write_coordinates(seq, np.array([a for a, _ in spans]), np.array([b for _, b in spans]), np.zeros(6, np.int64))
    w.write_chunk(0, np.ones((4, 2)), bits[:4])
    w.write_chunk(1, np.ones((2, 2)), bits[4:])
    w.finalize()
    store = ActivationStore.open(tmp_path / "s.zarr")
    genome = Genome(["a", "b"], np.zeros(16, np.uint8), np.array([0, 11]), np.array([11, 5]))
    full = LK.base_bits(store, genome, 0, 16)
    want = [1, 1, 1, np.nan, np.nan, np.nan, 2, 1.5, 1.5, 1.5, 1.5, 0.5, 0.5, 0.1, 0.1, 0.1]
    np.testing.assert_allclose(full, np.array(want, np.float32), rtol=1e-6)
    np.testing.assert_allclose(LK.base_bits(store, genome, 2, 13), full[2:13], rtol=0)
    assert LK.base_bits(store, genome, 5, 5).shape == (0,)
    with pytest.raises(ValueError, match="LM bits missing"):
        w.write_chunk(1, np.ones((2, 2)))


def test_report_section_orders_concepts_and_reads_each_one():
    from genesae_fast.annotate.lm_report import lm_section

    cc = {"concept": ["M1", "CDS(+)", "M2", "stop codon(+)", "M3"], "kind": ["motif", "gene", "motif", "gene", "motif"],
          "lm_sites": ["40", "900", "50", "800", "NA"], "lm_bits_site": ["1.2", "1.9", "1.9", "2.6", "NA"],
          "lm_bits_flank": ["1.9", "1.96", "1.9", "1.97", "NA"], "lm_bits_delta": ["-0.7", "-0.06", "0", "0.63", "NA"],
          "lm_bits_delta_ci": ["0.1", "0.005", "0.1", "0.02", "NA"], "lm_z": ["-14", "-25", "0", "51", "NA"],
          "lm_knows": ["1", "0", "0", "0", "NA"], "f1": ["0.1", "0.7", "0.4", "0.05", "0.2"],
          "neuron_f1": ["0.1", "0.7", "0.2", "0.02", "0.1"]}
    info = {"concepts_measured": 4, "concepts_known": 1, "knows_drop_bits": 0.1, "knows_z": 3.0,
            "knows_min_sites": 10, "flank_gap_bp": 10}
    page = lm_section({"summary": {"lm_knowledge": info}, "concepts": cc})
    order = [page.index(f"<td>{c}</td>") for c in ("CDS(+)", "stop codon(+)", "M1", "M2")]
    assert order == sorted(order) and "<td>M3</td>" not in page  # genes first; unmeasured left out
    assert "1 of 4 concepts are known" in page
    row = page[page.index("<td>M1</td>"):]
    assert row.index("SAE failure") < row.index("</tr>")
    row = page[page.index("<td>M2</td>"):]
    assert row.index("SAE finds it without an LM gain") < row.index("</tr>")
    row = page[page.index("<td>stop codon(+)</td>"):]
    assert row.index("LM failure") < row.index("</tr>")
    absent = lm_section({"summary": {"lm_knowledge": {"absent": "model x has no head"}}, "concepts": {}})
    assert "Not measured: model x has no head." in absent
