"""Dense categorical codes for any polars column.

API:
    encode_column(column: pl.Series) -> EncodedColumn(codes: np.ndarray[int32], cardinality: int,
                                                       n_null: int)

Every distinct value (null included, as a value of its own, the way OutRank treats a missing
field) gets one code in ``0 .. cardinality - 1``. Integers, booleans, dates and categoricals are
compacted in O(N + value span) with a bincount lookup table; strings, floats and anything with a
huge span fall back to polars ``rank("dense")``; nested types are hashed first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

# A lookup table up to this many slots (or 4 * rows) is cheaper than sorting.
_DENSE_SPAN_LIMIT = 1 << 22


@dataclass(frozen=True)
class EncodedColumn:
    codes: np.ndarray  # int32, one per row
    cardinality: int  # distinct values, null counted as one
    n_null: int


def compact_int_codes(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Map integer values to dense int32 codes 0..C-1 (order-preserving)."""
    if values.size == 0:
        return np.zeros(0, dtype=np.int32), 0
    lo, hi = int(values.min()), int(values.max())
    span = hi - lo + 1
    if span > max(_DENSE_SPAN_LIMIT, 4 * values.size):
        ranked = pl.Series(values).rank("dense").to_numpy()
        return (ranked - 1).astype(np.int32), int(ranked.max())
    # stay in 32 bits where the values allow: half the memory traffic of int64
    if values.dtype.itemsize <= 4 and hi < 2**31:
        offsets = values.astype(np.int32, copy=False) - np.int32(lo)
    else:
        offsets = values.astype(np.int64) - lo
    present = np.bincount(offsets, minlength=span) > 0
    cardinality = int(np.count_nonzero(present))
    if cardinality == span:
        return offsets.astype(np.int32, copy=False), cardinality
    remap = (np.cumsum(present, dtype=np.int32) - 1).astype(np.int32, copy=False)
    return np.take(remap, offsets), cardinality


def _integer_view(column: pl.Series) -> pl.Series | None:
    """An integer series with the same equality classes as ``column``, or None if it must be ranked."""
    dtype = column.dtype
    if dtype.is_integer():
        return column
    if dtype == pl.Boolean:
        return column.cast(pl.Int8)
    if isinstance(dtype, (pl.Categorical, pl.Enum)) or dtype.is_temporal():
        return column.to_physical()
    if dtype.is_nested():
        # 64-bit hashes: collisions are negligible next to the estimator's own sampling noise
        return column.hash(seed=0)
    return None


def encode_column(column: pl.Series) -> EncodedColumn:
    """Dense int32 codes of one column; null is a value of its own (code ``cardinality - 1``)."""
    n_null = column.null_count()
    null_mask = column.is_null().to_numpy() if n_null else None
    valid = column.drop_nulls() if n_null else column
    as_int = _integer_view(valid)
    if as_int is None:
        ranked = valid.rank("dense")
        dense = (ranked.to_numpy() - 1).astype(np.int32)
        cardinality = int(ranked.max() or 0)
    else:
        dense, cardinality = compact_int_codes(as_int.to_numpy())
    if n_null:
        codes = np.full(len(column), cardinality, dtype=np.int32)
        codes[~null_mask] = dense
        cardinality += 1
    else:
        codes = dense
    return EncodedColumn(codes=np.ascontiguousarray(codes, dtype=np.int32), cardinality=cardinality, n_null=n_null)
