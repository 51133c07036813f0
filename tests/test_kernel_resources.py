"""Every Triton kernel, compiled ahead of time for sm_80 and sm_90, spills nothing and fills a wave.

Runs ``benchmarks/kernel_resources.py --quick`` in a fresh process (the kernels must be
compiled, not interpreted, so TRITON_INTERPRET is removed from its environment; it uses
a fresh Triton cache, so nothing is reused across runs). No GPU is needed: Triton's
wheel ships ptxas and cuobjdump. The launch plans are also checked directly here, as
pure functions of a device description.
"""
from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

from genesae_fast.kernels import launch

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "kernel_resources.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("kernel_resources", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up by name
    spec.loader.exec_module(mod)
    return mod


def _ptxas_missing() -> str:
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed (Linux x86-64 only)"
    import triton

    bin_dir = pathlib.Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    if not (bin_dir / "ptxas").exists() or not (bin_dir / "cuobjdump").exists():
        return f"this Triton wheel ships no ptxas/cuobjdump in {bin_dir}"
    return ""


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    reason = _ptxas_missing()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("kres") / "table.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", str(out)], env=env, capture_output=True, text=True
    )
    assert out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    data["returncode"] = proc.returncode
    return data


def test_no_spills_and_a_full_wave(table):
    mod = _load_script()
    assert table["violations"] == [], "\n".join(table["violations"])
    assert table["returncode"] == 0
    for row in table["rows"]:
        where = f"sm_{row['arch']} {row['kernel']} d={row['d']} n={row['n']} k={row['k']} {row['dtype']}"
        assert row["stack"] <= mod.MAX_STACK, where
        assert row["programs"] >= mod.ARCH_SMS[row["arch"]], where
        assert 0 < row["registers"] <= 255, where


def test_every_kernel_and_arch_is_covered(table):
    kernels = {(r["kernel"], r["arch"], r["dtype"]) for r in table["rows"]}
    names = {
        "_topk_encode_split_kernel", "_topk_merge_kernel", "_gather_combine_kernel", "_gather_dot_kernel",
        "_scatter_outer_atomic_kernel", "_scatter_outer_segment_kernel",
    }
    assert kernels == {(n, a, t) for n in names for a in (80, 90) for t in ("fp32", "bf16")}
    # AuxK's k = d / 2 runs the row kernels (the encoder goes to the chunked path)
    assert any(r["k"] == r["d"] // 2 and r["kernel"] == "_gather_dot_kernel" for r in table["rows"])


def test_the_checker_flags_spills_and_small_grids():
    """violations() is what the test above trusts: it must catch both kinds of failure."""
    mod = _load_script()
    small = mod.Launch("_k", "m", (), (), 4, 1, programs=131)
    wave = mod.Launch("_k", "m", (), (), 4, 1, programs=132)
    rows = [
        dict(arch=90, sms=132, d=768, n=1, k=32, dtype="bf16", launch=small, res=mod.Resources(40, 64, 0)),
        dict(arch=90, sms=132, d=768, n=1, k=32, dtype="bf16", launch=wave, res=mod.Resources(255, 65, 0)),
        dict(arch=90, sms=132, d=768, n=1, k=32, dtype="bf16", launch=wave, res=mod.Resources(255, 64, 0)),
    ]
    bad = mod.violations(rows)
    assert len(bad) == 2 and "131 programs < 132 SMs" in bad[0] and "65 B/thread" in bad[1]


# ------------------------------------------------------------------ plans (no compiler needed)


@pytest.mark.parametrize("sms", [108, 132])
@pytest.mark.parametrize("n", [16384, 32768, 131072])
@pytest.mark.parametrize("k", [32, 64])
def test_encoder_fills_one_wave_at_4096_tokens(sms, n, k):
    plan = launch.encode_plan(4096, n, 768, k, True, launch.DeviceSpec(sms, 90))
    assert plan.split.programs >= sms
    assert plan.splits * plan.split_len >= n > (plan.splits - 1) * plan.split_len  # every latent in one split
    assert plan.split_len % plan.split.constexprs["BLOCK_N"] == 0
    assert plan.merge.constexprs["C_PAD"] >= plan.splits * k


@pytest.mark.parametrize(("row_blocks", "n_tiles", "sms"), [(64, 512, 132), (64, 512, 108), (1, 4, 132), (1000, 512, 132)])
def test_encode_splits(row_blocks, n_tiles, sms):
    s = launch.encode_splits(row_blocks, n_tiles, sms)
    assert 1 <= s <= n_tiles
    if row_blocks * n_tiles >= sms:
        assert row_blocks * s >= sms
    else:  # not enough work for a wave: one split per tile
        assert s == n_tiles


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(
    B=st.integers(1, 70000), n=st.integers(1, 300000), k=st.integers(1, launch.FUSED_MAX_K),
    sms=st.integers(1, 200), half=st.booleans(), arch=st.sampled_from([80, 86, 89, 90]),
    forced=st.integers(0, 100),
)
def test_encode_plan_properties(B, n, k, sms, half, arch, forced):
    """Any shape: every latent in exactly one split, a wave when there is work for one, merge fits."""
    k = min(k, n)
    plan = launch.encode_plan(B, n, 64, k, half, launch.DeviceSpec(sms, arch), splits=forced)
    cx = plan.split.constexprs
    n_tiles = launch.cdiv(n, cx["BLOCK_N"])
    assert plan.split_len % cx["BLOCK_N"] == 0
    assert (plan.splits - 1) * plan.split_len < n <= plan.splits * plan.split_len
    assert plan.split.grid == (launch.cdiv(B, cx["BLOCK_B"]), plan.splits)
    if forced:  # a forced count is met or exceeded (whole tiles per split), never halved
        assert min(forced, n_tiles) <= plan.splits <= 2 * forced
    else:
        cap = min(n_tiles, 2048 // cx["K_PAD"])  # the merge's candidate budget caps the splits
        # splits hold whole tiles, so the most splits within the cap is n_tiles / ceil(n_tiles / cap)
        most = launch.cdiv(n_tiles, launch.cdiv(n_tiles, cap))
        assert plan.split.programs >= min(sms, launch.cdiv(B, cx["BLOCK_B"]) * most)
        assert plan.merge.constexprs["C_PAD"] <= 2048
    assert cx["K_PAD"] >= k and plan.merge.constexprs["C_PAD"] >= plan.splits * k
    assert plan.merge.constexprs["BLOCK_B"] * plan.merge.grid[0] >= B
