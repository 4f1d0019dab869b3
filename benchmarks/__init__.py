"""Benchmarks shared by every method: Poisson systems, per-frame solves, baselines against scipy/pyamg,
and the imaging harness.  Each learned method keeps its own benchmark in its room
(``solvers/<name>/bench*.py``); the measured tables are in ``benchmarks/README.md``.
"""
