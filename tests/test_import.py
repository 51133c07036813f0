"""`genesae import` / import_array from .npy and .safetensors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.numpy import save_file
from safetensors.torch import save_file as save_torch

from genesae_fast.cli import cli
from genesae_fast.errors import InputError
from genesae_fast.store import ActivationStore, import_array


@pytest.mark.parametrize("src_dtype,dtype,want_dtype", [
    (np.float16, None, "float16"), (np.float32, None, "float32"), (np.float64, None, "float32"),
    (np.float32, "float16", "float16"), (np.float32, "bfloat16", "bfloat16")])
def test_npy(tmp_path, rng, src_dtype, dtype, want_dtype):
    x = rng.standard_normal((333, 5)).astype(src_dtype)
    np.save(tmp_path / "a.npy", x)
    s = ActivationStore.open(import_array(tmp_path / "a.npy", tmp_path / "s.zarr", dtype=dtype, chunk_rows=100),
                             verify=True)
    assert s.dtype == want_dtype and not s.has_coordinates and s.sequence_names == []
    if want_dtype == "bfloat16":
        want = torch.from_numpy(x.astype(np.float32)).to(torch.bfloat16).float().numpy()
    else:
        want = x.astype(want_dtype).astype(np.float32)
    assert np.array_equal(s.read_rows(0, 333), want)
    assert np.allclose(s.mean, want.astype(np.float64).mean(0))


def test_safetensors_keys_and_bfloat16_bits(tmp_path, rng):
    a = torch.from_numpy(rng.standard_normal((200, 6)).astype(np.float32)).to(torch.bfloat16)
    save_torch({"acts": a, "other": torch.zeros(3, 2)}, tmp_path / "t.safetensors")
    with pytest.raises(InputError, match="holds 2 tensors.*--key"):
        import_array(tmp_path / "t.safetensors", tmp_path / "s.zarr")
    with pytest.raises(InputError, match="no tensor named 'x'"):
        import_array(tmp_path / "t.safetensors", tmp_path / "s.zarr", key="x")
    s = ActivationStore.open(import_array(tmp_path / "t.safetensors", tmp_path / "s.zarr", key="acts", chunk_rows=64))
    assert s.dtype == "bfloat16"
    assert np.array_equal(s.read_rows(0, 200), a.float().numpy())
    save_file({"only": rng.standard_normal((10, 3)).astype(np.float32)}, tmp_path / "u.safetensors")
    assert ActivationStore.open(import_array(tmp_path / "u.safetensors", tmp_path / "u.zarr")).n_rows == 10


def test_bad_inputs(tmp_path):
    np.save(tmp_path / "v.npy", np.zeros(5, np.float32))
    with pytest.raises(InputError, match="2-D"):
        import_array(tmp_path / "v.npy", tmp_path / "s.zarr")
    np.save(tmp_path / "i.npy", np.zeros((5, 2), np.int32))
    with pytest.raises(InputError, match="floating point"):
        import_array(tmp_path / "i.npy", tmp_path / "s.zarr")
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(InputError, match="expected a .npy or .safetensors"):
        import_array(tmp_path / "x.csv", tmp_path / "s.zarr")
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(InputError, match="not a readable .npy"):
        import_array(tmp_path / "bad.npy", tmp_path / "s.zarr")
    with pytest.raises(InputError, match="no such file"):
        import_array(tmp_path / "missing.npy", tmp_path / "s.zarr")


def test_cli_import_resume_and_refusal(tmp_path, rng):
    x = rng.standard_normal((100, 4)).astype(np.float16)
    np.save(tmp_path / "a.npy", x)
    runner = CliRunner()
    args = ["import", str(tmp_path / "a.npy"), "--out", str(tmp_path / "s.zarr"), "--chunk-rows", "32", "-q"]
    assert runner.invoke(cli, args).exit_code == 0
    (tmp_path / "s.zarr" / "_progress" / "chunk-000000002.json").unlink()  # as if killed
    assert runner.invoke(cli, args).exit_code == 0
    assert np.array_equal(ActivationStore.open(tmp_path / "s.zarr", verify=True).read_rows(0, 100),
                          x.astype(np.float32))
    res = runner.invoke(cli, args + ["--dtype", "float32"])
    assert res.exit_code == 2 and "different settings" in res.output
    assert runner.invoke(cli, args + ["--dtype", "float32", "--overwrite"]).exit_code == 0
