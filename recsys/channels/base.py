"""Shared machinery for candidate channels.

Every channel follows one small interface (in the spirit of `implicit`)::

    channel = SomeChannel(**params).fit(history, items=items, runtime=runtime)
    recs = channel.recommend(user_ids, k=100, exclude_seen=True)   # user_id, item_id, score, rank

``history`` is an interactions frame (recsys.schema.INTERACTION_SCHEMA): train for the ``valid``
fold, train + valid for the ``test`` fold. Inside a channel, users and items are dense int32
indices (IdIndex) and interactions a scipy.sparse CSR matrix (interaction_matrix).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import polars as pl
import scipy.sparse as sp

# Implicit-feedback strength of each behaviour; MovieLens ratings count as one interaction each.
EVENT_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "click": 1.0,
    "rate": 1.0,
    "fav": 2.0,
    "cart": 3.0,
    "buy": 4.0,
}


class Channel(Protocol):
    name: str

    def fit(self, history: pl.DataFrame, items: pl.DataFrame | None = None, runtime=None) -> Channel: ...

    def recommend(self, user_ids, k: int, exclude_seen: bool = True) -> pl.DataFrame: ...


@dataclass(frozen=True)
class IdIndex:
    """Bijection between external int64 ids and dense int32 positions.

    ``ids[pos]`` is the external id at dense position ``pos``. ``from_values`` numbers ids in order of
    first appearance in the values given — callers pass history columns in the canonical event order
    (ts, seq), so the numbering depends on what happened when, never on how ids happen to be
    numbered. Every tie broken by dense position (stable sorts, top-k) is then label-free: relabelling
    user and item ids leaves everything computed in dense space bit-identical (tests/assets/test_metamorphic.py).
    """

    ids: np.ndarray  # external ids, int64, in dense-position order
    _sorted: np.ndarray = field(init=False, repr=False, compare=False)  # ids sorted, for the lookup
    _dense_of_sorted: np.ndarray = field(init=False, repr=False, compare=False)  # dense position of _sorted[j]

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids).astype(np.int64)
        order = np.argsort(ids, kind="stable")
        if ids.size > 1 and (np.diff(ids[order]) == 0).any():
            raise ValueError("IdIndex: ids must be unique")
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "_sorted", ids[order])
        object.__setattr__(self, "_dense_of_sorted", order.astype(np.int32))

    @classmethod
    def from_values(cls, values) -> IdIndex:
        arr = values.to_numpy() if isinstance(values, pl.Series) else np.asarray(values)
        unique, first = np.unique(arr.astype(np.int64), return_index=True)
        return cls(unique[np.argsort(first, kind="stable")])

    def __len__(self) -> int:
        return len(self.ids)

    def positions(self, values) -> np.ndarray:
        """Dense positions of ``values``; -1 where an id is unknown."""
        arr = values.to_numpy() if isinstance(values, pl.Series) else np.asarray(values)
        arr = arr.astype(np.int64)
        if not len(self.ids):
            return np.full(len(arr), -1, np.int32)
        pos = np.clip(np.searchsorted(self._sorted, arr), 0, len(self.ids) - 1)
        known = self._sorted[pos] == arr
        return np.where(known, self._dense_of_sorted[pos], -1).astype(np.int32)


def event_weight_expr(weights: dict[str, float] | None = None) -> pl.Expr:
    w = weights or EVENT_WEIGHTS
    return pl.col("event_type").replace_strict(w, default=1.0, return_dtype=pl.Float64)


def interaction_matrix(
    history: pl.DataFrame,
    users: IdIndex,
    items: IdIndex,
    weights: dict[str, float] | None = None,
    binary: bool = False,
) -> sp.csr_matrix:
    """users × items CSR of summed behaviour weights (or 1/0 when ``binary``); unknown ids dropped."""
    frame = history.select("user_id", "item_id", event_weight_expr(weights).alias("w"))
    u = users.positions(frame["user_id"])
    i = items.positions(frame["item_id"])
    keep = (u >= 0) & (i >= 0)
    w = frame["w"].to_numpy()[keep]
    m = sp.csr_matrix((w, (u[keep], i[keep])), shape=(len(users), len(items)), dtype=np.float32)
    m.sum_duplicates()
    if binary:
        m.data[:] = 1.0
    return m


def topk_rows(scores: np.ndarray, k: int, exclude: sp.csr_matrix | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k column indices and scores per row of a dense score block, best first.

    ``exclude`` (same shape, nonzero = forbidden) masks seen items with -inf before selection.
    Rows with fewer than k finite scores are padded with index -1 and score -inf.
    """
    scores = np.array(scores, dtype=np.float32, copy=True)
    if exclude is not None and exclude.nnz:
        r, c = exclude.nonzero()
        scores[r, c] = -np.inf
    n_rows, n_cols = scores.shape
    k = min(k, n_cols)
    if k <= 0:
        return np.empty((n_rows, 0), np.int32), np.empty((n_rows, 0), np.float32)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    idx = np.take_along_axis(part, order, axis=1).astype(np.int32)
    val = np.take_along_axis(part_scores, order, axis=1)
    idx[~np.isfinite(val)] = -1
    return idx, val


def recs_frame(user_ids: np.ndarray, idx: np.ndarray, scores: np.ndarray, items: IdIndex) -> pl.DataFrame:
    """Turn per-row top-k (dense item positions, -1 = empty) into a recommendation frame."""
    n_rows, k = idx.shape
    users_rep = np.repeat(np.asarray(user_ids, dtype=np.int64), k)
    flat_idx = idx.reshape(-1)
    flat_scores = scores.reshape(-1).astype(np.float64)
    ranks = np.tile(np.arange(1, k + 1, dtype=np.int32), n_rows)
    keep = flat_idx >= 0
    return pl.DataFrame(
        {
            "user_id": users_rep[keep],
            "item_id": items.ids[flat_idx[keep]],
            "score": flat_scores[keep],
            "rank": ranks[keep],
        },
        schema={"user_id": pl.Int64, "item_id": pl.Int64, "score": pl.Float64, "rank": pl.Int32},
    )


def batched(n: int, batch: int):
    for start in range(0, n, batch):
        yield start, min(n, start + batch)
