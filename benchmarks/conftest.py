"""Benchmarks: run with `pytest benchmarks/ --benchmark-only` (peers from the `bench` extra)."""
