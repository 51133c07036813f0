"""``genesae lm train``: Markov baseline, held-out split, training, resume, the folder as a model."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from genesae_fast.cli import cli
from genesae_fast.errors import InputError
from genesae_fast.models import describe, load_model
from genesae_fast.models import lm_data, lm_loop, lm_train
from genesae_fast.models.markov import Segment, best_markov, clean_run, fit_counts, score_bits
from genesae_fast.sequences import Record, encode, write_fasta

# -- Markov baseline against a dictionary reference ------------------------------------


def markov_reference(train_codes, held_codes, held_lo, order, alpha):
    """Order-k add-alpha model with back-off to the longest clean context, by dictionaries."""
    counts = {}
    for codes in train_codes:
        for i, b in enumerate(codes):
            if b > 3:
                continue
            for k in range(order + 1):
                ctx = tuple(codes[i - k : i]) if k else ()
                if i - k < 0 or any(c > 3 for c in ctx):
                    break
                counts.setdefault((k, ctx), np.zeros(4))[b] += 1
    bits, n = 0.0, 0
    for codes, lo in zip(held_codes, held_lo):
        for i in range(lo, len(codes)):
            if codes[i] > 3:
                continue
            k = 0
            while k < order and i - k - 1 >= 0 and codes[i - k - 1] <= 3:
                k += 1
            c = counts.get((k, tuple(codes[i - k : i]) if k else ()), np.zeros(4))
            bits -= math.log2((c[codes[i]] + alpha) / (c.sum() + 4 * alpha))
            n += 1
    return bits, n


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(alphabet="ACGTN", max_size=60), min_size=1, max_size=3), st.integers(0, 4),
       st.sampled_from([0.1, 1.0]))
def test_markov_matches_reference(seqs, order, alpha):
    codes = [np.asarray(encode(s), dtype=np.uint8) if s else np.zeros(0, np.uint8) for s in seqs]
    train = [Segment(c, 0, len(c) - len(c) // 4) for c in codes]
    held = [Segment(c, len(c) - len(c) // 4, len(c)) for c in codes]
    tables = fit_counts(train, order)
    bits, n = score_bits(tables, held, order, alpha)
    ref_bits, ref_n = markov_reference([c[: s.hi].tolist() for c, s in zip(codes, train)],
                                       [c.tolist() for c in codes], [s.lo for s in held], order, alpha)
    assert n == ref_n
    assert bits == pytest.approx(ref_bits, rel=1e-9, abs=1e-9)


def test_clean_run():
    codes = encode("ACNGTTNN A")
    assert clean_run(codes).tolist() == [0, 1, 2, 0, 1, 2, 3, 0, 0, 0]


def test_markov_finds_the_order_of_a_markov_source():
    """An order-2 source: the best order is 2 (or close), and beats order 0 clearly."""
    rng = np.random.default_rng(0)
    table = rng.dirichlet(np.full(4, 0.3), size=16)
    codes = [0, 1]
    for _ in range(30000):
        codes.append(rng.choice(4, p=table[codes[-2] * 4 + codes[-1]]))
    codes = np.asarray(codes, dtype=np.uint8)
    out = best_markov([Segment(codes, 0, 28000)], [Segment(codes, 28000, len(codes))], max_order=5)
    assert out["markov_order"] in (2, 3)
    assert out["markov_bits_per_bp"] < out["markov_bits_by_order"]["0"] - 0.3


def test_split_holds_out_the_last_5_percent():
    recs = [Record("a", "", encode("A" * 100), np.zeros(100, bool)), Record("b", "", encode("C" * 7), np.zeros(7, bool)),
            Record("e", "", np.zeros(0, np.uint8), np.zeros(0, bool))]
    train, held = lm_train.split_records(recs)
    assert [(s.lo, s.hi) for s in train] == [(0, 95), (0, 6)]
    assert [(s.lo, s.hi) for s in held] == [(95, 100), (6, 7)]


def test_sample_batch_reverse_complements_half():
    forward = "".join(np.random.default_rng(5).choice(list("ACGT"), 300))
    stream = np.asarray(encode(forward), dtype=np.int64)
    w = lm_train.sample_batch(stream, 400, 16, np.random.default_rng(0))
    text = ["".join("ACGT"[c] for c in row) for row in w]
    reverse = forward.translate(str.maketrans("ACGT", "TGCA"))[::-1]
    on_plus = np.array([t in forward for t in text])
    on_minus = np.array([t in reverse for t in text])
    assert (on_plus ^ on_minus).all()  # random 16-mers: each window is on exactly one strand
    assert 0.4 < on_plus.mean() < 0.6


# -- training ------------------------------------------------------------------------

SMALL = dict(n_layers=2, d_model=8, context=64, batch_size=4, progress=False, max_markov_order=4, workers=1)


class StepClock:
    """A fake clock that only moves when a training step runs: each call of the LM loss
    costs ``step_seconds``. Budgets then count steps, whatever the machine's load."""

    def __init__(self, monkeypatch, step_seconds: float, fail_on_call: int | None = None):
        self.now, self.calls = 0.0, 0
        real_loss = lm_loop.lm_loss

        def timed_loss(*args):
            self.calls += 1
            if self.calls == fail_on_call:
                raise KeyboardInterrupt
            self.now += step_seconds
            return real_loss(*args)

        monkeypatch.setattr(lm_loop, "lm_loss", timed_loss)

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def genome(tmp_path_factory):
    rng = np.random.default_rng(7)
    motif = "TTGACAATTAATCATCGGCTCGTATAATG"
    parts = ["".join(rng.choice(list("ACGT"), 60)) + motif for _ in range(60)]
    path = tmp_path_factory.mktemp("genome") / "g.fa"
    write_fasta([("r1", "".join(parts[:40])), ("r2", "NNNN" + "".join(parts[40:]).lower())], path)
    return path


def test_evaluate_bits_equals_one_full_pass(genome):
    """Chunked evaluation with receptive-field context = scoring one pass over each record."""
    import torch
    import torch.nn.functional as F

    from genesae_fast.models.builtin import build_network, evaluate_bits, make_config
    from genesae_fast.sequences import read_fasta

    torch.manual_seed(0)
    config = make_config(d_model=8, n_layers=3)
    net = build_network(config)
    _, held = lm_train.split_records(read_fasta(genome))
    bits, n = evaluate_bits(net, held, config["receptive_field_bp"][-1], "cpu", chunk=37)
    ref_bits, ref_n = 0.0, 0
    with torch.inference_mode():
        for seg in held:
            codes = torch.as_tensor(np.asarray(seg.codes, dtype=np.int64))
            logp = F.log_softmax(net(codes[None])[0], dim=0)  # column t predicts base t+1
            for p in range(seg.lo, seg.hi):
                if codes[p] < 4:
                    ref_bits -= float(logp[codes[p], p - 1]) / math.log(2)
                    ref_n += 1
    assert n == ref_n
    assert bits == pytest.approx(ref_bits, rel=1e-4)


def test_train_then_resume(genome, tmp_path, monkeypatch):
    out = tmp_path / "lm"
    clock = StepClock(monkeypatch, 0.25)  # exact in binary: 1.8 s of budget is 8 steps
    m1 = lm_train.train_lm(genome, out, minutes=0.03, checkpoint_seconds=0.5, clock=clock, **SMALL)
    for key in ("heldout_bits_per_bp", "markov_bits_per_bp", "markov_order"):
        assert key in m1
    assert m1["steps"] == 8 and m1["train_seconds"] == 2.0 and m1["heldout_scored_bp"] == m1["markov_scored_bp"] > 0
    assert (out / "lm_config.json").is_file() and (out / "model.safetensors").is_file()
    assert json.loads((out / "metrics.json").read_text())["steps"] == m1["steps"]
    # more minutes on the same folder continue from the checkpoint
    m2 = lm_train.train_lm(genome, out, minutes=0.06, checkpoint_seconds=0.5, clock=clock, **SMALL)
    assert m2["steps"] == 15 and m2["train_seconds"] == 3.75  # 3.6 s of budget in all
    assert m2["genome"] == "g.fa"  # the file's name, never this machine's path
    # the folder is a model everywhere
    model = load_model(str(out), device="cpu")
    assert (model.n_layers, model.d_model) == (2, 8)
    blocks = list(model.extract("ACGTNacgt" * 30, layer=2))
    assert sum(len(b) for b in blocks) == 270
    info = describe(out)
    assert info["heldout_bits_per_bp"] == m2["heldout_bits_per_bp"] and info["receptive_field_bp"] == [1, 3, 7]
    with pytest.raises(InputError, match="--layer 3"):
        next(model.extract("ACGT", layer=3))
    # other settings on the same folder are refused
    with pytest.raises(InputError, match="other settings .*d_model"):
        lm_train.train_lm(genome, out, minutes=0.06, **{**SMALL, "d_model": 16})


def test_interrupted_run_is_no_model_and_resumes(genome, tmp_path, monkeypatch):
    """Steps cost 3 s of a fake clock, so the budgets below are exact step counts."""
    import torch

    out = tmp_path / "lm"
    clock = StepClock(monkeypatch, 3.0, fail_on_call=6)
    with pytest.raises(KeyboardInterrupt):
        lm_train.train_lm(genome, out, minutes=1, checkpoint_seconds=0, clock=clock, **SMALL)
    assert (out / "checkpoint.pt").is_file() and not (out / "lm_config.json").exists()
    with pytest.raises(InputError, match="not a model folder"):
        load_model(str(out))
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert (state["step"], state["elapsed"]) == (5, 15.0)
    # a budget already spent (15 s = 0.25 min): no more steps, the checkpoint becomes the model
    m = lm_train.train_lm(genome, out, minutes=0.25, clock=StepClock(monkeypatch, 3.0), **SMALL)
    assert m["steps"] == 5
    assert load_model(str(out), device="cpu").n_layers == 2


def test_cli_lm_train(genome, tmp_path):
    out = tmp_path / "cli"
    runner = CliRunner()
    res = runner.invoke(cli, ["lm", "train", "--genome", str(genome), "--out", str(out), "--minutes", "0.02",
                              "--layers", "2", "--d-model", "8", "--context", "32", "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert "held-out" in res.output and (out / "metrics.json").is_file()
    res = runner.invoke(cli, ["info", str(out)])
    assert res.exit_code == 0 and "heldout_bits_per_bp" in res.output
    res = runner.invoke(cli, ["lm", "train", "--genome", str(tmp_path / "none.fa"), "--out", str(out)])
    assert res.exit_code == 2 and "none.fa" in res.output
    assert len(res.output.strip().splitlines()) == 1


# -- data-parallel workers, held-out checks, early stop ---------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50)), min_size=1, max_size=4), st.integers(1, 5))
def test_shares_and_halves_tile_the_segments(bounds, world):
    codes = np.zeros(200, np.uint8)
    segs = [Segment(codes, min(a, b), max(a, b) + 1) for a, b in bounds]
    for seg in segs:
        pieces = [s for r in range(world) for s in lm_data.share_segments([seg], r, world)]
        covered = [i for s in pieces for i in range(s.lo, s.hi)]
        assert covered == list(range(seg.lo, seg.hi))  # in rank order, no gap, no overlap
    val, test = lm_data.halve_segments(segs)
    assert sum(s.hi - s.lo for s in val + test) == sum(s.hi - s.lo for s in segs)
    assert all(s.hi > s.lo for s in val + test)


def test_step_windows_depend_on_seed_and_step_only():
    stream = np.asarray(encode("".join(np.random.default_rng(1).choice(list("ACGT"), 500))), dtype=np.int64)
    a = lm_data.step_windows(stream, 6, 20, seed=3, step=7)
    assert np.array_equal(a, lm_data.step_windows(stream, 6, 20, seed=3, step=7))
    assert not np.array_equal(a, lm_data.step_windows(stream, 6, 20, seed=3, step=8))
    assert not np.array_equal(a, lm_data.step_windows(stream, 6, 20, seed=4, step=7))


def _weights(folder):
    from safetensors.numpy import load_file

    return load_file(str(folder / "model.safetensors"))


def test_workers_same_seed_same_weights(genome, tmp_path):
    """Two worker processes: the same seed and worker count give bit-identical weights and
    held-out curve; one worker gives the same up to float rounding (the same global batches)."""
    kw = {**SMALL, "steps": 6, "eval_every": 2, "minutes": 10.0}
    runs = {name: lm_train.train_lm(genome, tmp_path / name, **{**kw, "workers": w})
            for name, w in (("a", 2), ("b", 2), ("one", 1))}
    wa, wb, w1 = (_weights(tmp_path / n) for n in ("a", "b", "one"))
    assert runs["a"]["workers"] == 2 and runs["one"]["workers"] == 1
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    def curve(name):  # seconds are wall-clock; the rest must repeat exactly
        return [(e["step"], e["val_bits_per_bp"], e["train_bits_per_bp"]) for e in runs[name]["eval_curve"]]

    assert curve("a") == curve("b") and [e[0] for e in curve("a")] == [2, 4, 6]
    for k in wa:
        np.testing.assert_allclose(wa[k], w1[k], rtol=1e-3, atol=1e-5)
    assert runs["a"]["val_bits_per_bp"] == pytest.approx(runs["one"]["val_bits_per_bp"], rel=1e-5)
    assert not all(np.array_equal(wa[k], _weights_init(genome, tmp_path)[k]) for k in wa)  # it did train


def _weights_init(genome, tmp_path):
    lm_train.train_lm(genome, tmp_path / "zero", **{**SMALL, "steps": 0, "minutes": 1.0})
    return _weights(tmp_path / "zero")


def _record_weights_per_step(monkeypatch) -> dict:
    """Step number -> a copy of the weights after that step, filled in as training runs."""
    seen = {}
    real_step = lm_loop.LMTrainer.train_step

    def recording_step(self, *args):
        bits = real_step(self, *args)
        seen[self.step] = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        return bits

    monkeypatch.setattr(lm_loop.LMTrainer, "train_step", recording_step)
    return seen


def test_early_stop_keeps_the_best_weights(genome, tmp_path, monkeypatch):
    """Scripted held-out bits 3, 2, 2.5, 2.6 with patience 2: training stops at step 4 and
    the folder holds the weights of step 2."""
    import torch

    script = iter([3.0, 2.0, 2.5, 2.6, 1.0, 1.0])
    monkeypatch.setattr(lm_loop.LMTrainer, "val_bits", lambda self, val: next(script))
    seen = _record_weights_per_step(monkeypatch)
    m = lm_train.train_lm(genome, tmp_path / "es", **{**SMALL, "minutes": 1.0, "eval_every": 1, "patience": 2},
                          clock=StepClock(monkeypatch, 1.0))
    assert (m["steps"], m["best_step"], m["stop_reason"], m["val_bits_per_bp"]) == (4, 2, "patience", 2.0)
    assert m["kept_weights"] == "best"
    assert [e["step"] for e in m["eval_curve"]] == [1, 2, 3, 4]
    assert [e["val_bits_per_bp"] for e in m["eval_curve"]] == [3.0, 2.0, 2.5, 2.6]
    saved = _weights(tmp_path / "es")
    assert all(np.array_equal(saved[k], seen[2][k].numpy()) for k in saved)
    assert not all(torch.equal(seen[2][k], seen[4][k]) for k in seen[2])
    # the written metrics carry the curve; the test half is scored beside its Markov baseline
    on_disk = json.loads((tmp_path / "es" / "metrics.json").read_text())
    assert on_disk["eval_curve"] == m["eval_curve"] and on_disk["test_scored_bp"] > 0
    assert math.isfinite(on_disk["markov_test_bits_per_bp"])


def test_no_early_stop_without_patience(genome, tmp_path, monkeypatch):
    monkeypatch.setattr(lm_loop.LMTrainer, "val_bits", lambda self, val: 2.0 + self.step)  # always worse
    import torch

    seen = _record_weights_per_step(monkeypatch)
    m = lm_train.train_lm(genome, tmp_path / "np", **{**SMALL, "steps": 5, "eval_every": 1, "patience": 0})
    assert (m["steps"], m["best_step"], m["stop_reason"], m["kept_weights"]) == (5, 1, "steps", "last")
    assert m["val_bits_per_bp"] == 7.0  # the last check's, not the best one's
    # without early stopping the last weights are kept, though an earlier check was better
    saved = _weights(tmp_path / "np")
    assert all(np.array_equal(saved[k], seen[5][k].numpy()) for k in saved)
    assert not all(torch.equal(seen[1][k], seen[5][k]) for k in seen[1])
    assert lm_train.DEFAULT_PATIENCE == 0


def test_bad_budget_options(genome, tmp_path):
    with pytest.raises(InputError, match="--patience"):
        lm_train.train_lm(genome, tmp_path / "x", **{**SMALL, "patience": -1})


@pytest.mark.parametrize("cores, load, batch, expect", [(2, 0.0, 32, 2), (2, 0.4, 32, 2), (2, 0.6, 32, 1),
                                                        (2, 11.7, 32, 1), (16, 3.2, 32, 13), (16, 0.0, 4, 4)])
def test_default_workers_leave_busy_cores(cores, load, batch, expect):
    assert lm_train.default_workers(batch, cores=cores, load=load) == expect


def test_workers_exit_when_lm_train_is_killed(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    # a module the spawned workers can import: each writes its pid, then idles
    (tmp_path / "idle_worker.py").write_text(
        "import os, time\n"
        "def idle(comm, folder):\n"
        "    open(os.path.join(folder, f'w{comm.rank}'), 'w').write(str(os.getpid()))\n"
        "    time.sleep(120)\n")
    script = (f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
              "from idle_worker import idle\n"
              "from genesae_fast.models.lm_parallel import run_workers\n"
              f"run_workers(2, idle, ({str(tmp_path)!r},))\n")
    # started as a shell starts a background job (`genesae lm train ... &`): SIGINT ignored,
    # which the workers inherit, so torch's parent-death SIGINT does not reach them
    parent = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(tmp_path)},
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    files = [tmp_path / "w0", tmp_path / "w1"]
    deadline = time.time() + 120
    while not all(f.is_file() and f.read_text() for f in files) and time.time() < deadline:
        time.sleep(0.2)
    pids = [int(f.read_text()) for f in files]
    parent.send_signal(signal.SIGKILL)
    parent.wait()

    def alive(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        # a zombie (exited, not yet reaped) counts as gone
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"

    deadline = time.time() + 30
    while any(alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.2)
    left = [p for p in pids if alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, "workers outlived their killed parent"


def test_dropout_trains_differently_resumes_exactly_and_is_off_at_inference(genome, tmp_path, monkeypatch):
    kw = {**SMALL, "steps": 6, "eval_every": 0, "minutes": 10.0, "dropout": 0.3}
    lm_train.train_lm(genome, tmp_path / "whole", **kw)
    # interrupted after 3 steps (a checkpoint after every step), then resumed: the same masks
    clock = StepClock(monkeypatch, 1.0, fail_on_call=4)
    with pytest.raises(KeyboardInterrupt):
        lm_train.train_lm(genome, tmp_path / "cut", checkpoint_seconds=0, clock=clock, **kw)
    lm_train.train_lm(genome, tmp_path / "cut", **kw)
    whole, cut = _weights(tmp_path / "whole"), _weights(tmp_path / "cut")
    assert all(np.array_equal(whole[k], cut[k]) for k in whole)
    lm_train.train_lm(genome, tmp_path / "plain", **{**kw, "dropout": 0.0})
    plain = _weights(tmp_path / "plain")
    assert not all(np.array_equal(whole[k], plain[k]) for k in whole)
    assert json.loads((tmp_path / "whole" / "lm_config.json").read_text())["dropout"] == 0.3
    # inference: eval mode, no masks; two extractions agree exactly
    model = load_model(str(tmp_path / "whole"), device="cpu")
    a, b = (np.concatenate([blk.activations for blk in model.extract("ACGTTGCA" * 40, layer=2)]) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(InputError, match="--dropout"):
        lm_train.train_lm(genome, tmp_path / "bad", **{**kw, "dropout": 1.0})


def test_configs_without_dropout_build_the_same_network():
    import torch

    from genesae_fast.models.builtin import build_network, make_config

    cfg = make_config(d_model=8, n_layers=2, dropout=0.5)
    old = {k: v for k, v in cfg.items() if k != "dropout"}  # lm_config.json written before dropout existed
    torch.manual_seed(0)
    a = build_network(cfg).eval()
    torch.manual_seed(0)
    b = build_network(old).eval()
    ids = torch.randint(0, 4, (2, 50))
    assert all(isinstance(blk.drop, torch.nn.Dropout) for blk in b.blocks) and b.blocks[0].drop.p == 0.0
    with torch.no_grad():
        torch.testing.assert_close(a(ids), b(ids), rtol=0, atol=0)
