"""The interactivity evaluation (SPEC §8, §9): `jax-interact eval`.

Streamed outputs become timed behaviour (transcripts.py), one scorer per task family grades it
(scoring.py) next to two baselines (baselines.py), and report.py writes report.json/report.md.
"""
