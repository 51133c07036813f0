"""Shared pytest settings and fixtures.

- ``TRITON_INTERPRET``: set here, once, before any test module can import Triton (Triton
  reads it when a kernel module is first imported), so the Triton kernels run on CPU
  through Triton's interpreter when there is no GPU. No test module sets it.
- ``backend``: runs a test on the torch and the Triton kernel paths (``GENESAE_KERNELS``);
  the Triton case is skipped, with the reason, where Triton is not installed (its wheels
  exist for Linux x86-64 only).
- ``tolerances``: absolute tolerances per dtype shared by the kernel and op tests.
- ``one_thread``: torch on one thread (tiny shapes on a shared machine: threads only add
  contention); restores the previous count.
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

HAS_TRITON = importlib.util.find_spec("triton") is not None
NO_TRITON = "Triton is not installed (its wheels exist for Linux x86-64 only)"

# Absolute tolerance of a kernel's result against the float64 truth, by input dtype.
TOLERANCES = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator so failures reproduce."""
    return np.random.default_rng(12345)


@pytest.fixture(params=["torch", pytest.param("triton", marks=pytest.mark.skipif(not HAS_TRITON, reason=NO_TRITON))])
def backend(request, monkeypatch) -> str:
    """The kernel path under test: ``"torch"`` or ``"triton"`` (set through ``GENESAE_KERNELS``)."""
    monkeypatch.setenv("GENESAE_KERNELS", request.param)
    return request.param


@pytest.fixture
def tolerances() -> dict:
    """``{dtype: atol}`` shared by the op tests."""
    return dict(TOLERANCES)


@pytest.fixture
def one_thread():
    """torch on one thread for the test."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
