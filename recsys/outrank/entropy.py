"""Count-based entropy terms, O(N) per call.

API:
    sum_xlogx(counts) -> float                       Σ c·ln c over counts (c ≤ 1 contribute 0)
    value_counts(codes, cardinality) -> np.ndarray   counts per code (bincount)
    joint_xlogx(a, b, cardinality_b, space) -> float Σ c·ln c over the (a, b) pair counts
    entropy(codes, cardinality) -> float             H in nats

All entropies are natural-log (nats), like outrank's estimator. Pair counts come from one
``np.bincount`` over ``a * |B| + b`` when the pair space is small, else from a polars hash
group-by (``unique_counts``), so the cost stays O(N) even for two 100k-cardinality columns.
"""

from __future__ import annotations

import numpy as np
import polars as pl

# Above this many possible pairs a hash count beats allocating the dense bincount table.
DENSE_PAIR_LIMIT = 1 << 23


def sum_xlogx(counts: np.ndarray) -> float:
    """Σ c·ln c; counts of 0 and 1 contribute nothing, so they are dropped first."""
    c = counts[counts > 1].astype(np.float64)
    return float(np.dot(c, np.log(c))) if c.size else 0.0


def value_counts(codes: np.ndarray, cardinality: int) -> np.ndarray:
    return np.bincount(codes, minlength=cardinality)


def joint_xlogx(a: np.ndarray, b: np.ndarray, cardinality_b: int, space: int) -> float:
    """Σ c·ln c over the counts of the pairs (a[i], b[i]); ``space`` bounds a * |B| + b."""
    key = a.astype(np.int64) * cardinality_b + b
    if space <= max(DENSE_PAIR_LIMIT, 2 * key.size):
        return sum_xlogx(np.bincount(key, minlength=0))
    return sum_xlogx(pl.Series(key).unique_counts().to_numpy())


def entropy(codes: np.ndarray, cardinality: int) -> float:
    """Plug-in Shannon entropy of a code column, in nats."""
    n = codes.size
    if n == 0:
        return 0.0
    return float(np.log(n) - sum_xlogx(value_counts(codes, cardinality)) / n)
