"""Slow, obvious NumPy versions of fastinit's public functions.

Tests and benchmarks compare against these. Each submodule covers one area:
``fills`` (the random stream and its transforms), ``orthogonal`` and ``sim``.
"""
