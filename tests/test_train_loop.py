"""genesae_fast.train.loop: dictionary recovery, held-out evaluation, resume, thread choice,
errors, CLI."""
from __future__ import annotations

import json
import math
import os
import signal

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from genesae_fast import threads as threads_mod
from genesae_fast.cli import cli
from genesae_fast.errors import InputError
from genesae_fast.train import TrainingInterrupted, default_lr, train_sae
from genesae_fast.train.synthetic import match_atoms, planted_dictionary, write_store

pytestmark = pytest.mark.usefixtures("one_thread")


def _small_store(tmp_path, rows=2000, d=8, chunk_rows=200, seed=0, name="s.zarr"):
    X, atoms = planted_dictionary(rows, d, 2 * d, 2, seed=seed)
    return str(write_store(X, tmp_path / name, chunk_rows=chunk_rows)), X, atoms


# --------------------------------------------------------------------------- end to end


def test_recovers_planted_dictionary(tmp_path):
    from genesae_fast.sae import TopKSAE

    X, atoms = planted_dictionary(40_000, 32, 64, 3, seed=1)
    store = write_store(X, tmp_path / "s.zarr", chunk_rows=2000)
    out = train_sae(store, tmp_path / "sae", latents=128, k=4, batch_size=512, tokens=250_000, progress=False,
                    threads=1)
    sae = TopKSAE.load(out)
    cos = match_atoms(atoms, sae.W_dec)
    assert (cos > 0.9).mean() >= 0.9, np.sort(cos)[:10]
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(128), rtol=0, atol=1e-5)
    # the saved SAE carries the store's normalisation
    np.testing.assert_allclose(sae.input_mean.numpy(), X[:38_000].mean(0), atol=0.05)
    report = json.loads((out / "eval.json").read_text())
    held = report["heldout"]
    assert held["rows"] == 2000 and report["heldout_chunks"] == [19, 20]
    assert held["fvu"] < 0.2 and held["l0"] <= 4
    # the held-out FVU agrees with a direct computation on those rows
    with torch.no_grad():
        xn = sae.normalize(torch.from_numpy(X[38_000:]))
        xh = sae(xn).x_hat
    fvu = float((xn - xh).pow(2).sum() / (xn - xn.mean(0)).pow(2).sum())
    assert held["fvu"] == pytest.approx(fvu, rel=1e-4)
    lines = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines and {"tokens", "fvu", "l0", "dead_fraction", "auxk_loss", "tokens_per_s"} <= set(lines[-1])
    assert lines[-1]["fvu"] < lines[0]["fvu"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["n_latents"] == 128 and cfg["k"] == 4 and cfg["training"]["tokens"] >= 250_000
    assert not (out / "trainer_state.pt").exists()


def _run(store, out, **kw):
    args = dict(latents=32, k=4, batch_size=64, tokens=64 * 30, progress=False, evaluate=False, threads=1)
    args.update(kw)
    return train_sae(store, out, **args)


def _weights(out):
    return load_file(str(out / "sae.safetensors"))


def test_training_with_the_former_decoder_helper_differs_only_by_rounding(tmp_path, monkeypatch):
    """The former trainer projected with ``g - <g, W> W``; TopKSAE's helper divides by the
    row norm first (about 1). A whole run moves by float32 rounding only."""
    from genesae_fast.sae import TopKSAE

    store, _, _ = _small_store(tmp_path)
    new = _weights(_run(store, tmp_path / "new", dead_tokens=64 * 3))

    @torch.no_grad()
    def former(self):
        g = self.W_dec.grad
        g.sub_((g * self.W_dec).sum(1, keepdim=True) * self.W_dec)

    monkeypatch.setattr(TopKSAE, "remove_parallel_grad_", former)
    old = _weights(_run(store, tmp_path / "old", dead_tokens=64 * 3))
    for name in new:
        torch.testing.assert_close(new[name], old[name], rtol=0, atol=1e-5, msg=name)


def test_resume_after_signal_equals_uninterrupted(tmp_path):
    store, _, _ = _small_store(tmp_path)
    ref = _run(store, tmp_path / "a", dead_tokens=64 * 3)  # dead latents: AuxK state is resumed too

    def interrupt(step, tokens):
        if step == 11:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted) as info:
        _run(store, tmp_path / "b", dead_tokens=64 * 3, callback=interrupt)
    assert info.value.signum == signal.SIGINT and "rerun" in str(info.value)
    assert not (tmp_path / "b" / "sae.safetensors").exists()
    assert (tmp_path / "b" / "trainer_state.pt").exists()
    resumed = _run(store, tmp_path / "b", dead_tokens=64 * 3)
    a, b = _weights(ref), _weights(resumed)
    assert set(a) == {"W_enc", "b_enc", "W_dec", "b_dec"}
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert (ref / "metrics.jsonl").read_text().count("\n") == (resumed / "metrics.jsonl").read_text().count("\n")


def test_resume_after_crash_from_periodic_checkpoint(tmp_path):
    store, _, _ = _small_store(tmp_path)
    ref = _run(store, tmp_path / "a", checkpoint_tokens=64 * 5)

    def crash(step, tokens):
        if step == 17:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError):
        _run(store, tmp_path / "b", checkpoint_tokens=64 * 5, callback=crash)
    assert torch.load(tmp_path / "b" / "trainer_state.pt", weights_only=False)["step"] == 15
    resumed = _run(store, tmp_path / "b", checkpoint_tokens=64 * 5)
    a, b = _weights(ref), _weights(resumed)
    for name in a:
        assert torch.equal(a[name], b[name]), name


class ThreadCostClock:
    """A fake clock: every reading advances it by the cost of a step at the current thread
    count, so a step timed as ``clock() - clock()`` costs exactly that (no real time)."""

    def __init__(self, cost):
        self.cost, self.now = cost, 0.0

    def __call__(self):
        self.now += self.cost[torch.get_num_threads()]
        return self.now


def test_auto_threads_keep_the_faster_count(tmp_path, monkeypatch):
    store, _, _ = _small_store(tmp_path)
    monkeypatch.setattr(threads_mod, "usable_cores", lambda: 2)
    seen = []
    clock = ThreadCostClock({1: 0.1, 2: 0.5})  # a loaded machine: two threads contend
    _run(store, tmp_path / "a", threads=None, clock=clock, callback=lambda step, tokens: seen.append(
        torch.get_num_threads()))
    # the count in force after each step: 3 timed steps each, the probe's last one switching to the faster
    assert seen[:5] == [1, 1, 1, 2, 2] and set(seen[5:]) == {1}
    assert torch.get_num_threads() == 1  # the caller's setting comes back
    seen.clear()
    _run(store, tmp_path / "b", threads=None, clock=ThreadCostClock({1: 0.5, 2: 0.1}),
         callback=lambda step, tokens: seen.append(torch.get_num_threads()))
    assert seen[:5] == [1, 1, 1, 2, 2] and set(seen[5:]) == {2}


def test_fixed_threads_are_used_and_restored(tmp_path):
    store, _, _ = _small_store(tmp_path)
    seen = []
    _run(store, tmp_path / "a", threads=2, tokens=64 * 5, callback=lambda s, t: seen.append(torch.get_num_threads()))
    assert seen == [2] * 5 and torch.get_num_threads() == 1
    with pytest.raises(InputError, match="--threads 0"):
        _run(store, tmp_path / "b", threads=0)


def test_thread_count_does_not_change_the_weights(tmp_path):
    """What lets the tuner switch counts mid-run and resumes stay byte-identical: on CPU the
    step's results do not depend on the thread count (torch 2.13, here 1 against 2 threads)."""
    X, _ = planted_dictionary(4000, 64, 128, 3, seed=1)
    store = str(write_store(X, tmp_path / "s.zarr", chunk_rows=400))
    one = _weights(_run(store, tmp_path / "one", latents=256, k=8, batch_size=256, tokens=256 * 12,
                        dead_tokens=256 * 3, threads=1))
    two = _weights(_run(store, tmp_path / "two", latents=256, k=8, batch_size=256, tokens=256 * 12,
                        dead_tokens=256 * 3, threads=2))
    for name in one:
        assert torch.equal(one[name], two[name]), name


def test_fixed_thread_count_is_deterministic(tmp_path):
    """Same options and thread count: the same weights bit for bit (what resumes rely on)."""
    store, _, _ = _small_store(tmp_path)
    a = _weights(_run(store, tmp_path / "a", dead_tokens=64 * 3, batch_topk=True))
    b = _weights(_run(store, tmp_path / "b", dead_tokens=64 * 3, batch_topk=True))
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_rerun_of_finished_run(tmp_path):
    store, _, _ = _small_store(tmp_path)
    out = _run(store, tmp_path / "a", tokens=64 * 4)
    before = (out / "sae.safetensors").stat().st_mtime_ns
    assert _run(store, out, tokens=64 * 4) == out  # same settings: nothing to do
    assert (out / "sae.safetensors").stat().st_mtime_ns == before
    with pytest.raises(InputError, match="other settings.*total_steps"):
        _run(store, out, tokens=64 * 8)
    _run(store, out, tokens=64 * 8, overwrite=True)
    assert json.loads((out / "config.json").read_text())["training"]["steps"] == 8


def test_resume_refuses_other_settings(tmp_path):
    store, _, _ = _small_store(tmp_path)

    def interrupt(step, tokens):
        if step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(TrainingInterrupted):
        _run(store, tmp_path / "b", callback=interrupt)
    with pytest.raises(InputError, match=r"other settings \(k 4 -> 5"):
        _run(store, tmp_path / "b", k=5)


# --------------------------------------------------------------------------- bad input


def _one_line_error(args):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    lines = [s for s in result.output.splitlines() if s.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def test_empty_store_error(tmp_path):
    store = write_store(np.zeros((0, 4), np.float32), tmp_path / "e.zarr", chunk_rows=10)
    msg = _one_line_error(["train", "--store", str(store), "--out", str(tmp_path / "sae")])
    assert "empty" in msg and "e.zarr" in msg
    assert not (tmp_path / "sae").exists()


def test_k_larger_than_latents_error(tmp_path):
    store, _, _ = _small_store(tmp_path)
    msg = _one_line_error(["train", "--store", store, "--out", str(tmp_path / "sae"), "--latents", "16", "--k", "17"])
    assert "--k 17" in msg and "16" in msg


@pytest.mark.parametrize("kind", ["missing", "not_a_store", "corrupt"])
def test_unreadable_store_error(tmp_path, kind):
    path = tmp_path / "bad.zarr"
    if kind == "not_a_store":
        path.mkdir()
    elif kind == "corrupt":
        path.mkdir()
        (path / "zarr.json").write_text("{ not json")
    msg = _one_line_error(["train", "--store", str(path), "--out", str(tmp_path / "sae")])
    assert "bad.zarr" in msg


def test_out_is_a_file_error(tmp_path):
    store, _, _ = _small_store(tmp_path)
    (tmp_path / "f").write_text("x")
    msg = _one_line_error(["train", "--store", store, "--out", str(tmp_path / "f"), "--latents", "16", "--k", "2"])
    assert "f" in msg


def test_bad_count_option(tmp_path):
    result = CliRunner().invoke(cli, ["train", "--store", "x", "--out", "y", "--tokens", "lots"])
    assert result.exit_code == 2 and "not a count" in result.output
    result = CliRunner().invoke(cli, ["train", "--store", "x", "--out", "y", "--threads", "0"])
    assert result.exit_code == 2 and "--threads" in result.output


# --------------------------------------------------------------------------- CLI


def test_cli_trains_and_reports(tmp_path):
    from genesae_fast.sae import TopKSAE

    store, X, _ = _small_store(tmp_path, rows=3000, chunk_rows=300)
    out = tmp_path / "sae"
    result = CliRunner().invoke(cli, ["train", "--store", store, "--out", str(out), "--expansion", "4", "--k", "3",
                                      "--batch", "128", "--tokens", "4k", "--batch-topk", "--threads", "1",
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    sae = TopKSAE.load(out)
    assert sae.W_enc.shape == (32, 8) and sae.k == 3
    cfg = json.loads((out / "config.json").read_text())
    run = cfg["training"]["run"]
    assert run["batch_topk"] is True and run["total_steps"] == math.ceil(4000 / 128)
    assert run["lr"] == pytest.approx(default_lr(32))
    assert run["heldout_chunks"] == [9, 10]
    report = json.loads((out / "eval.json").read_text())
    assert report["heldout"]["rows"] == 300 and 0 <= report["heldout"]["dead_fraction"] <= 1
    assert "lm_loss" in report
