"""Shared machinery for candidate channels.

Every channel follows one small interface (in the spirit of `implicit`)::

    channel = SomeChannel(**params).fit(history, items=items, runtime=runtime)
    recs = channel.recommend(user_ids, k=100, exclude_seen=True)   # user_id, item_id, score, rank

``history`` is an interactions frame (recsys.schema.INTERACTION_SCHEMA): train for the ``valid``
fold, train + valid for the ``test`` fold. Inside a channel, users and items are dense int32
indices (IdIndex) and interactions a scipy.sparse CSR matrix (interaction_matrix).
"""

from __future__ import annotations

import sys
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


# torch.topk (multithreaded) picks the candidates ~5x faster than np.argpartition on a 2,048 x 66,000
# float32 block, but importing torch costs ~2 s and ~0.3 GiB: it is used when torch is already imported
# or the block has at least TORCH_TOPK_MIN_SIZE cells (a catalogue large enough to repay the import).
# Either kernel goes through the same tie-fix pass, so the result does not depend on which one ran.
TORCH_TOPK_MIN_SIZE = 1 << 24


def _topk_candidates(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of *some* k largest entries per row (ties at the k-th value: any of them)."""
    if scores.size >= TORCH_TOPK_MIN_SIZE or ("torch" in sys.modules and scores.size >= 1 << 16):
        try:
            import torch
        except ImportError:  # pragma: no cover - torch is a pinned dependency
            torch = None
        if torch is not None:
            return torch.topk(torch.from_numpy(scores), k, dim=1, sorted=False).indices.numpy()
    return np.argpartition(-scores, k - 1, axis=1)[:, :k]


def topk_rows(scores: np.ndarray, k: int, exclude: sp.csr_matrix | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k column indices and scores per row of a dense score block, best first.

    ``exclude`` (same shape, nonzero = forbidden) masks seen items with -inf before selection.
    Rows with fewer than k finite scores are padded with index -1 and score -inf (NaN counts as -inf).

    Tie rule (label-free, kernel-independent): score descending, then column (dense position, i.e.
    first-appearance order, see IdIndex) ascending. Of several items tied at the k-th score the ones
    at the lowest positions get in. A fast kernel (_topk_candidates) picks some top-k set; rows where
    more items tie at the k-th score than fit are redone exactly, then the k picks are sorted by
    (-score, column). The same rule backs topk_sparse, so a channel may score a candidate subset
    instead of the whole catalogue and get the very same lists.
    """
    scores = np.array(scores, dtype=np.float32, copy=True)
    if exclude is not None and exclude.nnz:
        r, c = exclude.nonzero()
        scores[r, c] = -np.inf
    scores[np.isnan(scores)] = -np.inf
    n_rows, n_cols = scores.shape
    k = min(k, n_cols)
    if k <= 0 or n_rows == 0:
        return np.empty((n_rows, max(k, 0)), np.int32), np.empty((n_rows, max(k, 0)), np.float32)
    idx = _topk_candidates(scores, k).astype(np.int64)
    val = np.take_along_axis(scores, idx, axis=1)
    kth = val.min(axis=1)
    # rows where items tied at the k-th score are left out: re-pick the tied ones by position
    n_ge = (scores >= kth[:, None]).sum(axis=1)
    for row in np.flatnonzero((n_ge > k) & np.isfinite(kth)):
        s = scores[row]
        above = np.flatnonzero(s > kth[row])
        tied = np.flatnonzero(s == kth[row])[: k - len(above)]
        idx[row] = np.concatenate([above, tied])
        val[row] = s[idx[row]]
    order = np.lexsort((idx, -val), axis=-1)
    idx = np.take_along_axis(idx, order, axis=1).astype(np.int32)
    val = np.take_along_axis(val, order, axis=1)
    idx[~np.isfinite(val)] = -1
    val[idx < 0] = -np.inf
    return idx, val


def topk_sparse(
    rows: np.ndarray,
    cols: np.ndarray,
    scores: np.ndarray,
    n_rows: int,
    n_cols: int,
    k: int,
    exclude: sp.csr_matrix | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """topk_rows for a block given as scored (row, col) pairs instead of a dense array.

    Equals topk_rows on the dense block that holds these scores and -inf elsewhere, under the same tie
    rule (score descending, then column ascending). A pair given twice keeps its larger score.
    ``exclude`` (n_rows x n_cols, nonzero = forbidden) drops pairs; non-finite scores are dropped.
    Output width is min(k, n_cols), padded with -1 / -inf.
    """
    rows = np.asarray(rows, np.int64)
    scores = np.asarray(scores, np.float32)
    width = max(min(k, n_cols), 0)
    idx = np.full((n_rows, width), -1, np.int32)
    val = np.full((n_rows, width), -np.inf, np.float32)
    keys = rows * n_cols + np.asarray(cols, np.int64)
    order = np.argsort(keys, kind="stable")  # row-major, columns ascending inside a row
    keys, scores = keys[order], scores[order]
    if len(keys):
        first = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        keys, scores = keys[first], np.maximum.reduceat(scores, first)  # a pair given twice: its larger score
    keep = np.isfinite(scores)
    if exclude is not None and exclude.nnz:
        er, ec = exclude.nonzero()
        forbidden = np.sort(er.astype(np.int64) * n_cols + ec)
        at = np.minimum(np.searchsorted(forbidden, keys), len(forbidden) - 1)
        keep &= forbidden[at] != keys
    keys, scores = keys[keep], scores[keep]
    if width == 0 or not len(keys):
        return idx, val
    # each row's candidates side by side in column order: topk_rows's tie rule (score, then place in the
    # row) is then score, then column
    rows, cols = keys // n_cols, keys % n_cols
    counts = np.bincount(rows, minlength=n_rows)
    place = np.arange(len(keys)) - np.repeat(np.cumsum(counts) - counts, counts)
    block = np.full((n_rows, int(counts.max())), -np.inf, np.float32)
    block[rows, place] = scores
    col_of = np.full(block.shape, -1, np.int64)
    col_of[rows, place] = cols
    top, top_val = topk_rows(block, width)
    found = top >= 0
    idx[:, : top.shape[1]] = np.where(found, np.take_along_axis(col_of, np.maximum(top, 0), axis=1), -1)
    val[:, : top.shape[1]] = top_val
    return idx, val


def prefix_pairs(order: np.ndarray, lengths: np.ndarray, starts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(row, item) pairs: row r takes order[starts[r] : starts[r] + lengths[r]] (starts default 0)."""
    lengths = np.asarray(lengths, np.int64)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    offsets = np.arange(len(rows)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    if starts is not None:
        offsets = offsets + np.repeat(np.asarray(starts, np.int64), lengths)
    return rows, order[offsets]


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
