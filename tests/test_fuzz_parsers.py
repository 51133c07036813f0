"""Fuzz tests: every parser gives a result that matches a reference (or round-trips), or
one line of InputError / exit status 2; nothing else. Targets (FASTA, MEME/JASPAR/TRANSFAC
round trips and mutations, GFF3, store attributes and commit records, the count options of
train and kmers) live in tests/fuzz_targets.py; fuzz/run_fuzz.py runs the same targets
with thousands of examples each.

``GENESAE_FUZZ_EXAMPLES`` sets the examples per test (default 40, kept small for CI).
"""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings

import fuzz_targets as ft

EXAMPLES = int(os.environ.get("GENESAE_FUZZ_EXAMPLES", "40"))
TARGETS = ft.targets(wide=False)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz_target(name):
    strategy, check = TARGETS[name]

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(args=strategy)
    def run(args):
        check(*args)

    run()
