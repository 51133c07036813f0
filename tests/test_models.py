"""The GeneModel interface: windowing rule, extraction grid, the built-in model, load_model."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genesae_fast.errors import InputError
from genesae_fast.models import GeneModel, TokenizedSequence, builtin_path, describe, load_model
from genesae_fast.models.builtin import receptive_fields, tokenize_bases
from genesae_fast.models.windows import owned_ranges, owner_reference, window_starts
from genesae_fast.sequences import encode, file_sha256

# -- windowing rule -------------------------------------------------------------------

window_cases = st.integers(1, 40).flatmap(
    lambda w: st.tuples(st.integers(0, 300), st.just(w), st.integers(1, w))
)


@settings(max_examples=300, deadline=None)
@given(window_cases)
def test_owned_ranges_match_the_definition(case):
    """Fast ranges = brute-force 'window where the token sits furthest from an edge'."""
    n, window, stride = case
    ranges = owned_ranges(n, window, stride)
    owner = np.repeat(np.arange(len(ranges)), ranges[:, 1] - ranges[:, 0])
    np.testing.assert_array_equal(owner, owner_reference(n, window, stride))
    # every token exactly once, every window contributes
    assert ranges[:, 0].tolist() == [0] + ranges[:-1, 1].tolist() if n else len(ranges) == 0
    assert (ranges[:, 1] > ranges[:, 0]).all()


@settings(max_examples=300, deadline=None)
@given(window_cases)
def test_owned_tokens_have_central_context(case):
    """An owned token is at least half the overlap from both edges of its window,
    unless it is that close to an end of the sequence."""
    n, window, stride = case
    starts = window_starts(n, window, stride)
    w = min(window, n)
    assert (starts >= 0).all() and (starts + w <= n).all() and (np.diff(starts) > 0).all()
    half = (window - stride) // 2
    for (lo, hi), s in zip(owned_ranges(n, window, stride), starts):
        i = np.arange(lo, hi)
        margin = np.minimum(i - s, s + w - 1 - i)
        assert (margin >= np.minimum(half, np.minimum(i, n - 1 - i))).all()


def test_window_arguments_are_checked():
    with pytest.raises(InputError, match="--stride"):
        window_starts(10, 4, 5)
    with pytest.raises(InputError, match="--window"):
        window_starts(10, 0, 1)


# -- extraction grid, on a model whose outputs show where they came from ------------------


class ProbeModel(GeneModel):
    """Hidden state of a token = (token id, offset in its window, window start token id,
    batch size of the forward call): enough to see which window and which batch made it."""

    name = "probe"
    d_model = 4
    n_layers = 2
    identity = {"name": "probe", "path": "-", "sha256": "-"}
    default_window = 8
    default_stride = 6
    device = "cpu"

    def tokenize(self, sequence):
        return tokenize_bases(sequence)

    def forward_windows(self, token_ids, layer):
        b, w = token_ids.shape
        out = np.zeros((b, w, 4), dtype=np.float32)
        out[..., 0] = token_ids
        out[..., 1] = np.arange(w)[None, :]
        out[..., 2] = token_ids[0, 0] * 10 + layer
        out[..., 3] = b
        return out


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 120), window=st.integers(1, 20), data=st.data())
def test_extract_takes_each_token_from_its_owner(n, window, data):
    stride = data.draw(st.integers(1, window))
    batch = data.draw(st.integers(1, 4))
    seq = "".join(np.random.default_rng(n).choice(list("ACGTN"), n))
    model = ProbeModel()
    blocks = list(model.extract(seq, 1, window=window, stride=stride, batch_size=batch))
    if n == 0:
        assert blocks == []
        return
    acts = np.concatenate([b.activations for b in blocks])
    np.testing.assert_array_equal(np.concatenate([b.bp_start for b in blocks]), np.arange(n))
    np.testing.assert_array_equal(acts[:, 0], encode(seq))
    starts = window_starts(n, window, stride)
    owner = owner_reference(n, window, stride)
    np.testing.assert_array_equal(acts[:, 1], np.arange(n) - starts[owner])
    # one block per forward batch: window counts are batch-sized except the last
    assert all(b.activations[:, 3].max() == batch for b in blocks[:-1])
    # resuming anywhere recomputes that token's whole batch: identical values
    start = data.draw(st.integers(0, n))
    resumed = list(model.extract(seq, 1, window=window, stride=stride, batch_size=batch, start_token=start))
    got = np.concatenate([b.activations for b in resumed]) if resumed else np.zeros((0, 4), np.float32)
    np.testing.assert_array_equal(got, acts[start:])


def test_extract_bad_arguments():
    model = ProbeModel()
    for layer in (-1, 3):
        with pytest.raises(InputError, match=f"--layer {layer}: out of range"):
            next(model.extract("ACGT", layer))
    with pytest.raises(InputError, match="start_token"):
        next(model.extract("ACGT", 0, start_token=5))
    with pytest.raises(InputError, match="--batch-size"):
        next(model.extract("ACGT", 0, batch_size=0))


# -- the built-in model -------------------------------------------------------------------


@pytest.fixture(scope="module")
def builtin():
    return load_model("builtin", device="cpu")


def test_builtin_identity_and_layers(builtin):
    assert builtin.name == "builtin"
    assert builtin.d_model == builtin.config["d_model"] and builtin.n_layers == builtin.config["n_layers"]
    weights = builtin_path() / "model.safetensors"
    assert builtin.identity == {"name": "builtin", "path": str(builtin_path().resolve()), "sha256": file_sha256(weights)}
    fields = builtin.layer_info()["receptive_field_bp"]
    assert fields == receptive_fields(builtin.n_layers) and len(fields) == builtin.n_layers + 1
    # windows overlap enough that an owned token sees its whole receptive field
    assert (builtin.default_window - builtin.default_stride) // 2 >= fields[-1]


def test_shipped_model_beats_markov():
    metrics = json.loads((builtin_path() / "metrics.json").read_text())
    assert metrics["heldout_bits_per_bp"] < metrics["markov_bits_per_bp"] < 2.0
    assert metrics["heldout_scored_bp"] == metrics["markov_scored_bp"] > 100_000
    # the half of the held-out part that chose no step: the LM still beats the best Markov model
    assert metrics["test_bits_per_bp"] < metrics["markov_test_bits_per_bp"] < 2.0
    assert metrics["test_scored_bp"] > 50_000 and metrics["best_step"] <= metrics["steps"]


@settings(max_examples=50, deadline=None)
@given(st.text(alphabet="ACGTacgtNnRYSWKMBDHVX-", max_size=200))
def test_builtin_tokens_are_bases(seq):
    toks = tokenize_bases(seq)
    assert isinstance(toks, TokenizedSequence) and len(toks) == len(seq)
    np.testing.assert_array_equal(toks.token_ids, [("ACGT".index(c) if c in "ACGT" else 4) for c in seq.upper()])
    np.testing.assert_array_equal(toks.bp_start, np.arange(len(seq)))
    np.testing.assert_array_equal(toks.bp_end, np.arange(len(seq)) + 1)


@pytest.mark.parametrize("layer", [0, 2, 6])
def test_builtin_windows_equal_one_pass(builtin, layer):
    """The causal CNN's windowed activations equal one pass over the whole sequence: the
    owned part of every window has at least the receptive field as left context."""
    rng = np.random.default_rng(layer)
    seq = "".join(rng.choice(list("ACGTacgtN"), 3000))
    blocks = list(builtin.extract(seq, layer, window=700, stride=400, batch_size=2))
    acts = np.concatenate([b.activations for b in blocks])
    whole = builtin.forward_windows(tokenize_bases(seq).token_ids[None], layer)[0]
    assert acts.shape == (3000, builtin.d_model)
    np.testing.assert_allclose(acts, whole, rtol=1e-5, atol=1e-5)


def test_builtin_is_causal(builtin):
    ids = tokenize_bases("ACGTTGCAACGTAAAT" * 20).token_ids
    other = ids.copy()
    other[200:] = (other[200:] + 1) % 4
    a = builtin.forward_windows(np.stack([ids, other]), builtin.n_layers)
    np.testing.assert_array_equal(a[0, :200], a[1, :200])
    assert not np.allclose(a[0, 200:], a[1, 200:])


def test_describe_builtin():
    info = describe(builtin_path())
    assert info["n_layers"] == len(info["receptive_field_bp"]) - 1
    assert info["heldout_bits_per_bp"] < info["markov_bits_per_bp"]
    assert info["weights_sha256"] == file_sha256(builtin_path() / "model.safetensors")


def test_load_model_bad_specs(tmp_path):
    with pytest.raises(InputError, match="no such folder"):
        load_model(str(tmp_path / "missing"))
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        load_model(str(tmp_path / "f.txt"))
    with pytest.raises(InputError, match="not a model folder"):
        load_model(str(tmp_path))
    (tmp_path / "lm_config.json").write_text("{not json")
    with pytest.raises(InputError, match="unreadable config"):
        load_model(str(tmp_path))
    (tmp_path / "lm_config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(InputError, match="not a genesae LM config") as info:
        describe(tmp_path)
    assert "\n" not in str(info.value)


def test_next_base_bits_with_a_replaced_layer(builtin):
    """Identity replacement changes nothing; zeroing a layer costs bits; hooks are removed."""
    from genesae_fast.data import genome_path
    from genesae_fast.sequences import read_fasta

    seq = read_fasta(genome_path())[0].sequence[-3000:]
    bits, n = builtin.next_base_bits(seq)
    assert n == 2999 and 1.5 < bits / n < 2.1
    same, _ = builtin.next_base_bits(seq, layer=3, replace=lambda h: h.clone())
    assert same == pytest.approx(bits, rel=1e-6)
    for layer in (0, 3, builtin.n_layers):
        worse, _ = builtin.next_base_bits(seq, layer=layer, replace=lambda h: h * 0)
        assert worse > bits
    assert builtin.next_base_bits(seq)[0] == bits
    with pytest.raises(InputError, match="--layer 7"):
        builtin.next_base_bits(seq, layer=7, replace=lambda h: h)
