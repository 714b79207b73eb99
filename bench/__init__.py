"""Benchmarks of the engine: ``python -m bench.engine`` (see bench/README.md)."""
