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


# c·ln c for every count below _TABLE_SIZE: most counts are small, and a histogram of counts
# dotted with this table replaces one log per distinct pair.
_TABLE_SIZE = 1 << 16
_XLOGX = np.arange(_TABLE_SIZE, dtype=np.float64) * np.log(np.maximum(np.arange(_TABLE_SIZE), 1))


def sum_xlogx(counts: np.ndarray) -> float:
    """Σ c·ln c; counts of 0 and 1 contribute nothing."""
    if counts.size == 0:
        return 0.0
    large = counts[counts >= _TABLE_SIZE].astype(np.float64)
    tail = float(np.dot(large, np.log(large))) if large.size else 0.0
    if counts.size < 4096:
        small = counts[(counts > 1) & (counts < _TABLE_SIZE)]
        return float(_XLOGX[small].sum()) + tail
    histogram = np.bincount(np.minimum(counts, _TABLE_SIZE - 1), minlength=_TABLE_SIZE)
    histogram[_TABLE_SIZE - 1] -= large.size
    return float(np.dot(histogram, _XLOGX)) + tail


def value_counts(codes: np.ndarray, cardinality: int) -> np.ndarray:
    return np.bincount(codes, minlength=cardinality)


def joint_xlogx(a: np.ndarray, b: np.ndarray, cardinality_b: int, space: int) -> float:
    """Σ c·ln c over the counts of the pairs (a[i], b[i]); ``space`` bounds a * |B| + b."""
    if space < 2**31:
        # 32-bit keys: half the memory traffic of int64
        key = a.astype(np.int32, copy=False) * np.int32(cardinality_b) + b.astype(np.int32, copy=False)
    else:
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
