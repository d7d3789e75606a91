"""recdag's pure domain package: parsers, generator, OutRank, channels, PI2I, rankers, metrics.

Nothing here imports dagster; every function works on polars frames, numpy/scipy arrays or torch
modules so it can be tested and benchmarked without an orchestrator.
"""
