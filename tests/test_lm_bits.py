"""Per-token LM bits: the built-in model against a direct forward, the store's lm_bits array
(written with each chunk, CRC-checked, resumable, the same with workers)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from genesae_fast.errors import InputError
from genesae_fast.extract import extract_to_store
from genesae_fast.models import load_model
from genesae_fast.models.builtin import tokenize_bases
from genesae_fast.sequences import read_fasta, write_fasta
from genesae_fast.store import ActivationStore


@pytest.fixture(scope="module")
def builtin():
    return load_model("builtin", device="cpu")


def direct_bits(model, seq: str) -> np.ndarray:
    """Bits of every base by one forward over the whole sequence, in float64 numpy."""
    ids = tokenize_bases(seq).token_ids
    with torch.inference_mode():
        logits = model.net(torch.as_tensor(ids)[None])[0].double().numpy()  # [4, L]
    logp = logits - np.log(np.exp(logits).sum(axis=0, keepdims=True))
    out = np.full(len(ids), np.nan)
    for t in range(1, len(ids)):
        if ids[t] < 4:
            out[t] = -logp[ids[t], t - 1] / math.log(2)
    return out


def _seq(rng, n: int) -> str:
    s = np.array(list("ACGTacgN"))[rng.integers(0, 8, n)]
    return "".join(s)


def _extract_bits(model, seq, layer, **kw):
    blocks = list(model.extract(seq, layer, lm_bits=True, **kw))
    return (np.concatenate([b.activations for b in blocks]), np.concatenate([b.lm_bits for b in blocks]))


@pytest.mark.parametrize("layer", [0, 2, 6])
def test_bits_of_one_window_equal_a_direct_forward(builtin, rng, layer, one_thread):
    seq = _seq(rng, 300)
    acts, bits = _extract_bits(builtin, seq, layer)
    ref = direct_bits(builtin, seq)
    assert np.array_equal(np.isnan(bits), np.isnan(ref))  # base 0 and every N have none
    assert np.isnan(bits[0]) and np.isfinite(bits).sum() > 200
    np.testing.assert_allclose(bits[~np.isnan(bits)], ref[~np.isnan(ref)], rtol=1e-5, atol=1e-5)
    # the activations are those of the plain extraction, bit for bit
    plain = np.concatenate([b.activations for b in builtin.extract(seq, layer)])
    assert np.array_equal(acts, plain)
    # and the total is what evaluate_bits (lm train's metric) gives
    total, n = builtin.next_base_bits(seq)
    assert n == np.isfinite(bits).sum() and total == pytest.approx(float(np.nansum(bits.astype(np.float64))), rel=1e-5)


@pytest.mark.parametrize(("window", "stride", "start"), [(512, 256, 0), (400, 100, 0), (512, 256, 1333)])
def test_windows_overlapping_twice_the_context_give_the_whole_sequence_bits(builtin, rng, window, stride, start,
                                                                           one_thread):
    # the deepest receptive field is 127 bp: an overlap >= 254 gives every owned base its full context
    seq = _seq(rng, 3000)
    blocks = list(builtin.extract(seq, 2, window=window, stride=stride, lm_bits=True, start_token=start))
    bits = np.concatenate([b.lm_bits for b in blocks])
    ref = direct_bits(builtin, seq)[start:]
    assert np.array_equal(np.isnan(bits), np.isnan(ref))
    np.testing.assert_allclose(bits[~np.isnan(bits)], ref[~np.isnan(ref)], rtol=1e-5, atol=1e-5)


def _genome(path: Path, rng) -> Path:
    write_fasta([("a", _seq(rng, 2600)), ("empty", ""), ("b", _seq(rng, 900)), ("c", "NNNN" + _seq(rng, 1500))], path)
    return path


@pytest.fixture
def genome(tmp_path, rng):
    return _genome(tmp_path / "g.fa", rng)


def _files(store: Path) -> dict:
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}


def test_store_keeps_the_model_bits_and_the_same_activations(tmp_path, genome, builtin):
    with_bits = extract_to_store(genome, "builtin", 2, tmp_path / "b.zarr", chunk_rows=512, progress=False,
                                 workers=1, lm_bits=True)
    plain = extract_to_store(genome, "builtin", 2, tmp_path / "p.zarr", chunk_rows=512, progress=False, workers=1)
    sb, sp = ActivationStore.open(with_bits), ActivationStore.open(plain)
    assert sb.has_lm_bits and not sp.has_lm_bits
    assert np.array_equal(sb.read_rows(0, sb.n_rows), sp.read_rows(0, sp.n_rows))
    assert sb.attrs["config"] != sp.attrs["config"]
    torch.set_num_threads(1)
    expect = np.concatenate([_extract_bits(builtin, r.sequence, 2)[1] for r in read_fasta(genome) if len(r)])
    got = sb.lm_bits()
    assert np.array_equal(np.isnan(got), np.isnan(expect))
    assert np.array_equal(got[~np.isnan(got)], expect[~np.isnan(expect)])
    assert np.array_equal(sb.lm_bits(700, 1900), got[700:1900], equal_nan=True) and sb.lm_bits(5, 5).shape == (0,)
    # a store without bits says why; the plain store's config digest is unchanged by the feature
    with pytest.raises(InputError, match="has no LM bits"):
        sp.lm_bits()
    assert "has_lm_bits" not in sp.attrs["config_fields"]


def test_lm_bits_with_workers_and_after_a_resume_are_the_same_bytes(tmp_path, genome):
    kw = dict(chunk_rows=512, batch_size=4, progress=False, lm_bits=True)
    one = Path(extract_to_store(genome, "builtin", 2, tmp_path / "one.zarr", workers=1, **kw))
    two = Path(extract_to_store(genome, "builtin", 2, tmp_path / "two.zarr", workers=2, **kw))
    assert _files(one) == _files(two)
    # lose two commit records and a bits chunk, corrupt another bits chunk: the rerun redoes them
    for k in (1, 4):
        (two / "_progress" / f"chunk-{k:09d}.json").unlink()
    (two / "lm_bits" / "c" / "4").unlink()
    with open(two / "lm_bits" / "c" / "2", "r+b") as f:
        f.seek(40)
        f.write(b"\x00\x01\x02\x03")
    extract_to_store(genome, "builtin", 2, two, workers=2, **kw)
    assert _files(one) == _files(two)


def test_corrupt_lm_bits_chunk_is_a_one_line_error(tmp_path, genome):
    out = Path(extract_to_store(genome, "builtin", 2, tmp_path / "s.zarr", chunk_rows=512, progress=False,
                                workers=1, lm_bits=True))
    with open(out / "lm_bits" / "c" / "1", "r+b") as f:
        f.seek(8)
        f.write(b"\x00\x00\x80\x7f")
    s = ActivationStore.open(out)
    s.lm_bits(0, 512)  # chunk 0 is fine
    with pytest.raises(InputError, match=r"LM bits chunk 1 is corrupt \(CRC-32"):
        s.lm_bits(0, 1024)
    with pytest.raises(InputError, match=r"verification failed: LM bits chunk 1 is corrupt"):
        ActivationStore.open(out).verify()
    (out / "lm_bits" / "c" / "1").write_bytes(b"\x00" * 12)  # truncated
    with pytest.raises(InputError, match=r"LM bits chunk 1 is damaged"):
        ActivationStore.open(out).lm_bits()
    assert ActivationStore.open(out).verify([0, 2]) == 2


def test_lm_bits_choice_and_bad_input(tmp_path, genome):
    from test_extract_model import TinyModel

    with pytest.raises(InputError, match="^--lm-bits: model .* has no next-token head"):
        extract_to_store(genome, TinyModel(), 1, tmp_path / "t.zarr", progress=False, lm_bits=True)
    with pytest.raises(InputError, match="^--lm-bits 'maybe': expected"):
        extract_to_store(genome, "builtin", 1, tmp_path / "m.zarr", progress=False, lm_bits="maybe")
    assert not (tmp_path / "t.zarr").exists() and not (tmp_path / "m.zarr").exists()
    # auto: kept for a model with a head, absent with the model's reason otherwise
    s = ActivationStore.open(extract_to_store(genome, TinyModel(), 1, tmp_path / "a.zarr", progress=False,
                                              lm_bits="auto"))
    assert not s.has_lm_bits and "no next-token head" in s.attrs["lm_bits_absent"]
    s = ActivationStore.open(extract_to_store(genome, "builtin", 1, tmp_path / "b.zarr", progress=False,
                                              lm_bits="auto", max_tokens=900))
    assert s.has_lm_bits and "-log2 P" in s.attrs["lm_bits"]["definition"]


def test_cli_extract_lm_bits(tmp_path, genome):
    from click.testing import CliRunner

    from genesae_fast.cli import cli

    r = CliRunner().invoke(cli, ["extract", "--genome", str(genome), "--out", str(tmp_path / "s.zarr"), "-q",
                                 "--max-tokens", "800", "--lm-bits", "yes"])
    assert r.exit_code == 0, r.output
    assert ActivationStore.open(tmp_path / "s.zarr").has_lm_bits
    r = CliRunner().invoke(cli, ["extract", "--genome", str(genome), "--out", str(tmp_path / "x.zarr"), "-q",
                                 "--lm-bits", "often"])
    assert r.exit_code == 2


# ------------------------------------------------------------------ Hugging Face checkpoints
def _build_causal_char(folder) -> None:
    """A tiny character-level GPT-2 with its LM head (HyenaDNA-like, causal)."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"ACGTN"])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(vocab), n_positions=96, n_embd=16, n_layer=2, n_head=2)
                    ).save_pretrained(folder)
    PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]").save_pretrained(folder)


def test_hf_causal_lm_gives_bits_of_its_head(tmp_path, rng, one_thread):
    pytest.importorskip("transformers", reason="Hugging Face checkpoints need the optional transformers package")
    _build_causal_char(tmp_path / "gpt")
    model = load_model(str(tmp_path / "gpt"), device="cpu")
    assert model.causal and model.lm_bits_unavailable() is None
    seq = _seq(rng, 60)
    toks = model.tokenize(seq)
    with torch.inference_mode():
        logits = model.model(input_ids=torch.as_tensor(toks.token_ids)[None]).logits[0].double().numpy()
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    want = np.array([np.nan] + [-logp[t - 1, toks.token_ids[t]] / math.log(2) for t in range(1, len(toks))])
    want[np.array([c not in "ACGTacgt" for c in seq])] = np.nan  # N has no bits
    acts, bits = _extract_bits(model, seq, 1)
    assert np.array_equal(np.isnan(bits), np.isnan(want))
    np.testing.assert_allclose(bits[~np.isnan(bits)], want[~np.isnan(want)], rtol=1e-5, atol=1e-5)
    assert np.array_equal(acts, np.concatenate([b.activations for b in model.extract(seq, 1)]))


def test_hf_models_without_a_head_say_why(tmp_path):
    pytest.importorskip("transformers", reason="Hugging Face checkpoints need the optional transformers package")
    from test_models_hf import build_char, build_dnabert

    for name, build in (("gpt2_bare", build_char), ("dnabert", build_dnabert)):
        build(tmp_path / name)
        model = load_model(str(tmp_path / name), device="cpu")
        assert not model.causal
        assert "names no causal-LM architecture" in model.lm_bits_unavailable()
        with pytest.raises(NotImplementedError):
            model.forward_windows_bits(np.zeros((1, 8), np.int64), 1)
