"""Benchmarks run by ``hft bench NAME`` and ``make bench``; figures go to docs/BENCHMARKS.md."""
