"""Local Hugging Face checkpoints: tiny random models of every gene-LM tokenizer family.

Each family is built here with transformers + tokenizers (no downloads), saved to a folder
and loaded back through ``load_model`` as a user's checkpoint would be.
"""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genesae_fast.errors import InputError
from genesae_fast.models import load_model
from genesae_fast.models.hf import normalize_sequence

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TINY = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)


def _bert(vocab_size: int, folder, tokenizer) -> None:
    from transformers import BertConfig, BertModel

    import torch

    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=vocab_size, max_position_embeddings=128, **TINY)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def build_char(folder) -> None:
    """Character level, causal, no special tokens around a sequence (HyenaDNA-like)."""
    import torch
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2Model, PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS + list("ACGTN"))}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]")
    torch.manual_seed(0)
    GPT2Model(GPT2Config(vocab_size=len(vocab), n_positions=96, n_embd=16, n_layer=2, n_head=2)).save_pretrained(folder)
    tok.save_pretrained(folder)


def build_sixmer(folder) -> None:
    """Non-overlapping 6-mers with single-base fallback, ESM tokenizer (Nucleotide Transformer-like)."""
    import torch
    from transformers import EsmConfig, EsmModel, EsmTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    words = ["<cls>", "<pad>", "<eos>", "<unk>", "<mask>"]
    words += ["".join(p) for p in itertools.product("ACGT", repeat=6)] + list("ACGTN")
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    tok = EsmTokenizer(str(folder / "vocab.txt"))
    torch.manual_seed(0)
    config = EsmConfig(vocab_size=len(words), pad_token_id=1, mask_token_id=4, max_position_embeddings=66,
                       position_embedding_type="absolute", **TINY)
    EsmModel(config).save_pretrained(folder)
    tok.save_pretrained(folder)


def build_dnabert(folder, k: int = 3) -> None:
    """Overlapping k-mers through a BERT word tokenizer (DNABERT-like)."""
    from transformers import BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    words = SPECIALS + ["".join(p) for p in itertools.product("ACGT", repeat=k)]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    _bert(len(words), folder, BertTokenizer(str(folder / "vocab.txt"), do_lower_case=False))


def build_bpe(folder) -> None:
    """BPE trained on random DNA, [CLS] ... [SEP] template (DNABERT-2 / GENA-LM-like)."""
    from tokenizers import Tokenizer, models, processors, trainers
    from transformers import PreTrainedTokenizerFast

    rng = np.random.default_rng(1)
    # repeats make real merges; N is in the alphabet so N runs tokenize
    corpus = ["".join(rng.choice(list("ACGT"), 200)) + "TATAAT" * 20 + "NNNN" for _ in range(30)]
    tk = Tokenizer(models.BPE(unk_token="[UNK]"))
    trainer = trainers.BpeTrainer(vocab_size=60, special_tokens=SPECIALS, initial_alphabet=list("ACGTN"))
    tk.train_from_iterator(corpus, trainer)
    cls, sep = tk.token_to_id("[CLS]"), tk.token_to_id("[SEP]")
    tk.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                  sep_token="[SEP]", mask_token="[MASK]")
    _bert(tk.get_vocab_size(), folder, tok)


BUILDERS = {"char": build_char, "sixmer": build_sixmer, "dnabert": build_dnabert, "bpe": build_bpe}


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory):
    """Every family saved once and loaded through load_model."""
    out = {}
    for name, build in BUILDERS.items():
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        out[name] = load_model(str(folder), device="cpu")
    return out


def check_coordinates(model, family: str, seq: str) -> None:
    """The tokens' bp coordinates must spell the sequence with the tokens' own strings."""
    toks = model.tokenize(seq)
    norm = normalize_sequence(seq)
    assert toks.token_ids.dtype == np.int64 and toks.bp_start.dtype == np.int64 and toks.bp_end.dtype == np.int64
    if family == "dnabert":
        k = model.kmer
        n = max(0, len(seq) - k + 1)
        np.testing.assert_array_equal(toks.bp_start, np.arange(n))
        np.testing.assert_array_equal(toks.bp_end, np.arange(n) + k)
        vocab = model.tokenizer.get_vocab()
        kmers = [norm[i : i + k] for i in range(n)]
        for tid, kmer in zip(toks.token_ids, kmers):
            assert tid == vocab.get(kmer, model.tokenizer.unk_token_id)
        # what DNABERT users do by hand: the BERT tokenizer over space-separated k-mers
        if kmers:
            ref = model.tokenizer(" ".join(kmers), add_special_tokens=False)["input_ids"]
            assert toks.token_ids.tolist() == ref
        return
    # non-overlapping families tile the sequence exactly
    assert len(toks) == 0 if not seq else toks.bp_start[0] == 0
    if len(toks):
        assert toks.bp_end[-1] == len(seq)
        np.testing.assert_array_equal(toks.bp_start[1:], toks.bp_end[:-1])
        assert (toks.bp_end > toks.bp_start).all()
    pieces = model.tokenizer.convert_ids_to_tokens(toks.token_ids.tolist())
    for piece, s, e in zip(pieces, toks.bp_start, toks.bp_end):
        assert piece == norm[s:e], (piece, s, e)
    # whatever shortcut the model takes, the ids are the checkpoint tokenizer's own
    if seq:
        assert toks.token_ids.tolist() == model.tokenizer(norm, add_special_tokens=False)["input_ids"]


DNA = st.text(alphabet="ACGTacgtNnRYKM", min_size=0, max_size=150)


@st.composite
def dna_with_n_runs(draw):
    """Random DNA with lowercase stretches, IUPAC letters and N runs."""
    parts = draw(st.lists(st.one_of(DNA, st.integers(1, 12).map(lambda n: "N" * n)), max_size=4))
    return "".join(parts)


@pytest.mark.parametrize("family", list(BUILDERS))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seq=dna_with_n_runs())
def test_coordinates_every_family(hf_models, family, seq):
    check_coordinates(hf_models[family], family, seq)


def test_families_are_told_apart(hf_models):
    """The k-mer arithmetic path is taken for DNABERT only; the others use their tokenizer."""
    assert hf_models["dnabert"].kmer == 3
    assert all(hf_models[f].kmer is None for f in ("char", "sixmer", "bpe"))
    assert hf_models["char"]._char_lookup is not None and hf_models["bpe"]._char_lookup is None
    # the 6-mer tokenizer really makes 6-mers and falls back to single bases around N
    toks = hf_models["sixmer"].tokenize("ACGTACGTACGTnACGTACgt")
    assert (toks.bp_end - toks.bp_start).tolist() == [6, 6, 1, 6, 1, 1]
    # BPE merged something
    toks = hf_models["bpe"].tokenize("TATAAT" * 10)
    assert (toks.bp_end - toks.bp_start).max() > 1


@pytest.mark.parametrize("family", list(BUILDERS))
def test_extract_matches_one_window_forward(hf_models, family):
    """Windowed extraction of every layer covers every token once with the tokenizer's ids and
    coordinates, and a resumed call gives bit-identical values."""
    model = hf_models[family]
    rng = np.random.default_rng(3)
    seq = "".join(rng.choice(list("ACGTN"), 90))
    toks = model.tokenize(seq)
    for layer in range(model.n_layers + 1):
        blocks = list(model.extract(seq, layer, window=16, stride=12, batch_size=3))
        acts = np.concatenate([b.activations for b in blocks])
        assert acts.shape == (len(toks), model.d_model) and acts.dtype == np.float32
        np.testing.assert_array_equal(np.concatenate([b.bp_start for b in blocks]), toks.bp_start)
        np.testing.assert_array_equal(np.concatenate([b.token_ids for b in blocks]), toks.token_ids)
        resumed = list(model.extract(seq, layer, window=16, stride=12, batch_size=3, start_token=17))
        np.testing.assert_array_equal(np.concatenate([b.activations for b in resumed]), acts[17:])
    assert model.identity["sha256"] != "none" and len(model.identity["sha256"]) == 64


def test_layers_are_read_with_hooks(hf_models):
    """Layer L equals transformers' own hidden_states[L] for a window with the special tokens."""
    import torch

    model = hf_models["bpe"]
    toks = model.tokenize("ACGTTATAATTATAATGGCANNNNACGT")
    ids = torch.as_tensor([model._prefix + toks.token_ids.tolist() + model._suffix])
    with torch.inference_mode():
        ref = model.model(input_ids=ids, output_hidden_states=True).hidden_states
    for layer in range(model.n_layers + 1):
        got = model.forward_windows(toks.token_ids[None], layer)[0]
        np.testing.assert_allclose(got, ref[layer][0, 1:-1].numpy(), rtol=1e-5, atol=1e-6)


def test_bad_inputs(hf_models, tmp_path):
    model = hf_models["sixmer"]
    with pytest.raises(InputError, match="--layer 3"):
        next(model.extract("ACGT" * 10, 3))
    with pytest.raises(InputError, match="--window"):
        next(model.extract("ACGT" * 10, 0, window=10_000))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(InputError, match="cannot load") as info:
        load_model(str(broken))
    assert "\n" not in str(info.value)
    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "config.json").write_text(json.dumps({"model_type": "hyena_made_up", "auto_map": {"AutoConfig": "x.Config"}}))
    with pytest.raises(InputError, match="--trust-remote-code") as info:
        load_model(str(remote))
    assert "\n" not in str(info.value)


def test_next_base_logprobs_with_a_patched_layer(hf_models):
    """A causal character-level checkpoint runs with a layer replaced through a hook: the
    identity patch gives the unpatched log-probs exactly, a changed layer changes them, and
    the four columns are the head's A/C/G/T logits renormalised."""
    import torch
    from transformers import AutoModelForCausalLM

    model = hf_models["char"]
    ids = model.tokenize("ACGTTATAATNNACGGCA" * 3).token_ids[None]
    clean = model.next_base_logprobs(ids)
    lm = AutoModelForCausalLM.from_pretrained(model._folder, local_files_only=True).eval()
    with torch.inference_mode():
        logits = lm(input_ids=torch.as_tensor(ids)).logits[..., [model.tokenizer.get_vocab()[b] for b in "ACGT"]]
    torch.testing.assert_close(clean, torch.log_softmax(logits, dim=-1), rtol=1e-5, atol=1e-6)
    for layer in range(model.n_layers + 1):
        assert torch.equal(model.next_base_logprobs(ids, layer=layer, replace=lambda h: h.clone()), clean)
        seen = []

        def zero(h, seen=seen):
            seen.append(h.shape)
            return h * 0

        changed = model.next_base_logprobs(ids, layer=layer, replace=zero)
        assert seen == [torch.Size([1, ids.shape[1], model.d_model])] and not torch.equal(changed, clean)
    assert torch.equal(model.next_base_logprobs(ids), clean)  # hooks removed
    with pytest.raises(InputError, match="character-level causal LM"):
        hf_models["bpe"].next_base_logprobs(ids)


def test_causal_window_scores_with_a_hf_model(hf_models):
    """Sites whose window reaches back to the record start score as a whole-record pass does;
    windows are cut to the model's length limit; a site longer than it is refused."""
    from genesae_fast.causal import SiteSet, score_sites

    model = hf_models["char"]
    codes = np.random.default_rng(0).integers(0, 4, 90).astype(np.uint8)
    lookup = model.tokenize("ACGTN").token_ids
    lp = model.next_base_logprobs(lookup[codes.astype(np.int64)][None])[0].double().numpy()
    per_base = np.concatenate([[0.0], -lp[np.arange(89), codes[1:]] / np.log(2)])
    start, end = np.array([0, 5, 30, 60]), np.array([3, 12, 40, 90])
    got = score_sites(model, codes, SiteSet(start, end, np.zeros(4, np.int64)))
    ref = [per_base[s:e].sum() for s, e in zip(start, end)]
    np.testing.assert_allclose(got.bits, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got.n_bases, [2, 7, 10, 30])
    long = np.random.default_rng(1).integers(0, 4, 300).astype(np.uint8)
    cut = score_sites(model, long, SiteSet(np.array([250]), np.array([260]), np.array([0])))
    assert cut.n_bases[0] == 10 and np.isfinite(cut.bits[0])  # window [164, 260): 96 tokens
    with pytest.raises(InputError, match="longer than the model's window"):
        score_sites(model, long, SiteSet(np.array([0]), np.array([200]), np.array([0])))


def test_causal_stage_runs_with_a_hf_checkpoint(tmp_path):
    """`genesae run --causal` with a character-level causal checkpoint: the stage runs
    through the HF patch (tiny random model: only the table's shape is checked)."""
    from genesae_fast.annotate.folder import read_tsv
    from genesae_fast.causal import COLUMNS
    from genesae_fast.data import genome_path
    from genesae_fast.motifs import load_motifs, write_meme
    from genesae_fast.pipeline import RunSettings, run_pipeline
    from genesae_fast.sequences import read_fasta, write_fasta

    build_char(tmp_path / "m")
    rec = read_fasta(genome_path())[0]
    write_fasta([(rec.name, rec.sequence[:8000])], tmp_path / "g.fa")
    write_meme(load_motifs()[:4], tmp_path / "m.meme")
    settings = RunSettings(expansion=2, k=4, batch=256, min_train_tokens=5000, max_train_tokens=5000, causal=True,
                           causal_pairs=3, causal_sites=20)
    messages = []
    out = run_pipeline(tmp_path / "out", genome=str(tmp_path / "g.fa"), model=str(tmp_path / "m"), layer=1,
                       motifs=str(tmp_path / "m.meme"), settings=settings, progress=False, workers=1,
                       echo=messages.append)
    assert "[causal] ..." in messages and out["causal_layer"] == 1
    table = read_tsv(tmp_path / "out" / "annotate" / "causal.tsv")
    assert list(table) == list(COLUMNS) and len(table["concept"]) == out["causal_pairs_tested"] >= 1
    settings.causal = None  # by default only the built-in model gets the stage
    (tmp_path / "out" / "annotate" / "causal.tsv").unlink()
    messages.clear()
    run_pipeline(tmp_path / "out", genome=str(tmp_path / "g.fa"), model=str(tmp_path / "m"), layer=1,
                 motifs=str(tmp_path / "m.meme"), settings=settings, progress=False, workers=1, echo=messages.append)
    assert not any("causal" in m for m in messages[1:])
