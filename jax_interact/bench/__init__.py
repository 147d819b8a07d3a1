"""Benchmarks behind `jax-interact bench {data,train,decode}`, each writing one JSON file.

Every benchmark JSON carries "benchmark" (its name), "config" and a flat "headline" dict of the
numbers worth tracking; benchmarks/record.py appends those to docs/BENCHMARKS.md.
"""
