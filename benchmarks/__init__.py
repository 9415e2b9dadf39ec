"""Benchmark scripts of sk-i2m2, run from the repository root as ``python -m benchmarks.<script>``.

``benchmarks.common`` holds what they share: data, scikit-learn baselines,
metrics and the writing of ``RESULTS.md`` sections.
"""
