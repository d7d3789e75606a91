"""Count-based entropy terms, O(N) per call.

API:
    sum_xlogx(counts) -> float                       Σ c·ln c over counts (c ≤ 1 contribute 0)
    value_counts(codes, cardinality) -> np.ndarray   counts per code (bincount)
    joint_xlogx(a, b, cardinality_b, space) -> float Σ c·ln c over the (a, b) pair counts
    entropy(codes, cardinality) -> float             H in nats

All entropies are natural-log (nats), like outrank's estimator. Pair counts come from one
``np.bincount`` over ``a * |B| + b`` when the pair space is small, else from run lengths of the
polars-sorted keys (O(N log N), but parallel and faster than a hash group-by at 1M rows) when the
pair space is too large for a table, e.g. two 100k-cardinality columns.
"""

from __future__ import annotations

import numpy as np
import polars as pl

# Above this many possible pairs, sorting the keys beats allocating the dense bincount table.
DENSE_PAIR_LIMIT = 1 << 23


# c·ln c for every count below _TABLE_SIZE: a table gather is cheaper than one log per pair
# (and np.dot on mixed dtypes falls off BLAS, so plain sums are used throughout).
_TABLE_SIZE = 1 << 16
_XLOGX = np.arange(_TABLE_SIZE, dtype=np.float64) * np.log(np.maximum(np.arange(_TABLE_SIZE), 1))


def sum_xlogx(counts: np.ndarray) -> float:
    """Σ c·ln c; counts of 0 and 1 contribute nothing."""
    is_large = counts >= _TABLE_SIZE
    total = float(_XLOGX[np.where(is_large, 0, counts)].sum())
    if is_large.any():
        large = counts[is_large].astype(np.float64)
        total += float((large * np.log(large)).sum())
    return total


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
    return sum_xlogx(run_lengths(key))


def run_lengths(key: np.ndarray) -> np.ndarray:
    """Counts of each distinct key; polars' parallel sort beats its hash group-by here."""
    ordered = pl.Series(key).sort().to_numpy()
    if ordered.size == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.flatnonzero(ordered[1:] != ordered[:-1])
    return np.diff(np.concatenate(([-1], ends, [ordered.size - 1])))


def entropy(codes: np.ndarray, cardinality: int) -> float:
    """Plug-in Shannon entropy of a code column, in nats."""
    n = codes.size
    if n == 0:
        return 0.0
    return float(np.log(n) - sum_xlogx(value_counts(codes, cardinality)) / n)
