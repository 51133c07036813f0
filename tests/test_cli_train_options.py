"""``genesae train`` option validation (issue 14): counts capped, no NaN/inf floats, devices
checked up front; each refusal is exit status 2 with one Error line naming the option."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from genesae_fast.cli import cli
from genesae_fast.cli.train import MAX_COUNT, COUNT


def _train(tmp_path, *args):
    missing = tmp_path / "no.zarr"
    result = CliRunner().invoke(cli, ["train", "--store", str(missing), "--out", str(tmp_path / "o"), *args])
    return result, str(missing)


def _refused(result, option, piece):
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    errors = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and option in errors[0] and piece in errors[0], result.output


@pytest.mark.parametrize("option, value, piece", [
    ("--tokens", "1e30", "more than the largest allowed, 1e+15"),
    ("--tokens", "1e400", "more than the largest"),
    ("--tokens", "1000001G", "more than the largest"),
    ("--tokens", "nan", "is not a count"),
    ("--tokens", "inf", "is not a count"),
    ("--tokens", "1.5", "whole number"),
    ("--tokens", "0", "whole number"),
    ("--batch", "99999999999999999999", "more than the largest"),
    ("--latents", "3e9", "more than the largest allowed, 2.15e+09"),
    ("--dead-tokens", "-5", "is not a count"),
    ("--checkpoint-every", "1_000", "is not a count"),
    ("--lr", "nan", "not a finite number"),
    ("--lr", "inf", "not a finite number"),
    ("--lr", "-1e-3", "must be > 0"),
    ("--lr", "0", "must be > 0"),
    ("--lr", "abc", "is not a number"),
    ("--aux-coef", "nan", "not a finite number"),
    ("--aux-coef", "-inf", "not a finite number"),
    ("--aux-coef", "-0.5", "must be >= 0"),
    ("--k", "99999999999999999999", "--k"),
    ("--expansion", "100000", "--expansion"),
    ("--seed", "-1", "--seed"),
    ("--seed", str(2**64), "--seed"),
    ("--device", "garbage", "is not a torch device"),
    ("--device", "xla", "expected cpu, cuda, cuda:N or mps"),
])
def test_bad_options_refused(tmp_path, option, value, piece):
    result, _ = _train(tmp_path, option, value)
    _refused(result, option, piece)


@pytest.mark.parametrize("option, value", [
    ("--tokens", "1e15"), ("--tokens", "5M"), ("--tokens", " 2.5k "), ("--batch", "4096"), ("--lr", "1e-3"),
    ("--aux-coef", "0"), ("--device", "cpu"), ("--seed", str(2**63 - 1)), ("--latents", "2147483647"),
])
def test_good_options_reach_the_store(tmp_path, option, value):
    result, missing = _train(tmp_path, option, value)
    assert result.exit_code == 2 and result.output.strip() == f"Error: {missing}: no such store", result.output


@pytest.mark.parametrize("text, want", [("5000000", 5_000_000), ("5e6", 5_000_000), ("5M", 5_000_000),
                                        ("1.5k", 1500), ("2.5e3", 2500), ("1e15", MAX_COUNT), ("7", 7),
                                        ("999999999999999", 999_999_999_999_999)])
def test_count_values_are_exact(text, want):
    assert COUNT.convert(text, None, None) == want


@pytest.mark.parametrize("gpus", [0, 2])
def test_cuda_devices_checked_against_the_machine(tmp_path, monkeypatch, gpus):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    for value in ("cuda", "cuda:0", "cuda:1", "cuda:7"):
        result, missing = _train(tmp_path, "--device", value)
        if gpus == 0:
            _refused(result, "--device", "no CUDA GPU is available")
        elif value == "cuda:7":
            _refused(result, "--device", "this machine has 2 CUDA GPU(s) (cuda:0 to cuda:1)")
        else:
            assert result.output.strip() == f"Error: {missing}: no such store", result.output
