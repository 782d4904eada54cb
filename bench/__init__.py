"""Benchmarks of the whole pairing path on this machine: `python -m bench` (see README.md)."""
