"""Item-to-item indexes: windowed co-occurrence and Swing, truncated to a depth (used by item CF and PI2I).

API::

    index = build_cooc_index(history, depth=50, window_hours=24.0, max_items_per_user=200,
                             user_weighting="log", normalize="cosine")          # -> ItemIndex
    index = build_swing_index(history, depth=50, alpha=1.0, max_items_per_user=200,
                              max_users_per_item=300)                            # -> ItemIndex
    index = cooc_from_baskets(basket_item_csr, basket_weights, depth=50)         # the core, on a matrix
    index.neighbours(item_ids=None, depth=None)  # item_id, neighbour_id, score, count, rank (1-based)
    index.lookup(trig_pos, tgt_pos)              # score, count, rank (0-based; depth when absent)


``ItemIndex`` holds, for every item (dense int32 position of ``ItemIndex.items``), its top-D
targets: ``targets[n_items, D]`` (int32, -1 = empty), ``scores[n_items, D]`` (float32) and
``counts[n_items, D]`` (float32 raw support: baskets holding both items for co-occurrence, user
pairs holding both for Swing).

Co-occurrence. Baskets are (user, session) when ``session_id`` is present, else per-user
pseudo-sessions cut wherever two consecutive events are more than ``window_hours`` apart
(``window_hours=None``: the whole capped user history is one basket). Each (basket, item) cell
carries the strongest behaviour weight (EVENT_WEIGHTS) seen in it; a heavy user is capped to his
last ``max_items_per_user`` distinct items and each of his baskets is weighted by 1/log(1 + n_u)
(n_u = his distinct items after the cap). With B the weighted basket × item matrix and D_u the
user weights, C = Bᵀ D_u B and N_i = C_ii; ``normalize="cosine"`` gives C_ij / sqrt(N_i N_j)
(cosine of the weighted basket vectors), ``"conditional"`` C_ij / N_i (for binary weights exactly
P(j in basket | i in basket)), ``"none"`` C_ij.

Swing (Yang et al., "Large Scale Product Graph Construction for Recommendation in E-commerce",
2020): swing(i, j) = Σ_{u<v ∈ U_i ∩ U_j} w_u w_v / (alpha + |I_u ∩ I_v|), w_u = (|I_u| + 5)^-0.35,
on users capped to their last ``max_items_per_user`` items and items capped to their
``max_users_per_item`` most recent users. It is computed as Pᵀ diag(K) P where P is the
(user pair × item) incidence of common items: no loop over pairs.

Both indexes select with one top-n sparse product (sparse_dot_topn's C++ kernel, all cores): each
row keeps only its best D + 1 entries (the item itself may be one), so memory stays bounded by the
D-deep result, never by the item × item matrix. Where a row's cut falls inside a tie the kernel picks
among the tied targets by its own accumulation order; ``exact_ties=True`` computes those rows again
wider so the index's order (score, support, position) decides there too, as it does everywhere else
in the list (what sql/index/*_neighbours.sql compute; one-off timings, not a bench: on the 1M binary
Zipf matrix of bench_item_index about 3× the build time, 72,022 of 200,000 rows tied at the cut);
normalizations are folded into the operands. The
raw counts of the kept pairs come free when every product term is one constant (binary cells,
equal basket weights: the count is the value over it, exact in float64); otherwise a binary
product in item blocks of about ``block_nnz`` entries is read at the kept pairs only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.channels.base import EVENT_WEIGHTS, IdIndex, event_weight_expr
from recsys.schema import with_event_position

_BLOCK_NNZ = 20_000_000  # expected product entries per item block (≈ 250 MB of scipy temporaries)


# ----------------------------------------------------------------------------------------------
# The index
# ----------------------------------------------------------------------------------------------


@dataclass
class ItemIndex:
    """Top-D item → item lists on dense int32 positions of ``items``."""

    items: IdIndex
    targets: np.ndarray  # int32 [n_items, D], -1 = empty slot
    scores: np.ndarray  # float32 [n_items, D], 0 in empty slots
    counts: np.ndarray  # float32 [n_items, D], raw support of the pair
    method: str = "cooc"
    _keys: np.ndarray | None = field(default=None, repr=False, compare=False)
    _order: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def depth(self) -> int:
        return int(self.targets.shape[1])

    @property
    def n_items(self) -> int:
        return int(self.targets.shape[0])

    def truncate(self, depth: int) -> ItemIndex:
        d = min(depth, self.depth)
        return ItemIndex(self.items, self.targets[:, :d].copy(), self.scores[:, :d].copy(), self.counts[:, :d].copy(), self.method)

    def list_lengths(self) -> np.ndarray:
        return (self.targets >= 0).sum(axis=1).astype(np.int32)

    def to_csr(self, depth: int | None = None, values: str = "scores") -> sp.csr_matrix:
        """items × items sparse matrix of the first ``depth`` slots (values: scores|counts|ones)."""
        d = self.depth if depth is None else min(depth, self.depth)
        tg = self.targets[:, :d]
        keep = tg >= 0
        rows = np.repeat(np.arange(self.n_items, dtype=np.int32), keep.sum(axis=1))
        if values == "ones":
            data = np.ones(int(keep.sum()), np.float32)
        else:
            data = (self.scores if values == "scores" else self.counts)[:, :d][keep]
        m = sp.csr_matrix((data, (rows, tg[keep])), shape=(self.n_items, self.n_items), dtype=np.float32)
        return m

    def _lookup_tables(self) -> tuple[np.ndarray, np.ndarray]:
        if self._keys is None:
            keep = self.targets >= 0
            flat = np.flatnonzero(keep.reshape(-1))
            rows = flat // self.depth
            keys = rows.astype(np.int64) * self.n_items + self.targets.reshape(-1)[flat]
            order = np.argsort(keys, kind="stable")
            self._keys, self._order = keys[order], flat[order]
        return self._keys, self._order

    def lookup(self, trig: np.ndarray, tgt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Score, count and 0-based rank of ``tgt`` in ``trig``'s list (0, 0, depth when absent)."""
        keys, order = self._lookup_tables()
        q = np.asarray(trig, np.int64) * self.n_items + np.asarray(tgt, np.int64)
        if len(keys) == 0:
            n = len(q)
            return np.zeros(n, np.float32), np.zeros(n, np.float32), np.full(n, self.depth, np.int32)
        pos = np.clip(np.searchsorted(keys, q), 0, len(keys) - 1)
        found = keys[pos] == q
        flat = order[pos]
        score = np.where(found, self.scores.reshape(-1)[flat], 0.0).astype(np.float32)
        count = np.where(found, self.counts.reshape(-1)[flat], 0.0).astype(np.float32)
        rank = np.where(found, flat % self.depth, self.depth).astype(np.int32)
        return score, count, rank

    def neighbours(self, item_ids=None, depth: int | None = None) -> pl.DataFrame:
        """Long frame item_id, neighbour_id, score, count, rank (1-based) for ``item_ids`` (all if None)."""
        d = self.depth if depth is None else min(depth, self.depth)
        rows = np.arange(self.n_items, dtype=np.int32) if item_ids is None else self.items.positions(item_ids)
        rows = rows[rows >= 0]
        tg = self.targets[rows, :d]
        keep = tg >= 0
        return pl.DataFrame(
            {
                "item_id": np.repeat(self.items.ids[rows], keep.sum(axis=1)),
                "neighbour_id": self.items.ids[tg[keep]],
                "score": self.scores[rows, :d][keep].astype(np.float64),
                "count": self.counts[rows, :d][keep].astype(np.float64),
                "rank": (np.nonzero(keep)[1] + 1).astype(np.int32),
            }
        )

    @classmethod
    def from_neighbours(cls, neighbours: pl.DataFrame, items: IdIndex, depth: int, method: str = "cooc") -> ItemIndex:
        """The index of a long neighbours frame (item_id, neighbour_id, score, count, rank 1-based), as
        ``neighbours()`` writes it or an engine computes it (sql/index/cooc_neighbours.sql). Ids unknown
        to ``items`` or ranks past ``depth`` are an error, not dropped."""
        row = items.positions(neighbours["item_id"].to_numpy())
        col = items.positions(neighbours["neighbour_id"].to_numpy())
        slot = neighbours["rank"].to_numpy().astype(np.int64) - 1
        bad = (row < 0) | (col < 0) | (slot < 0) | (slot >= depth)
        if bad.any():
            example = neighbours.filter(pl.Series(bad)).head(1).to_dicts()[0]
            raise ValueError(f"neighbours: {int(bad.sum())} rows with an unknown item or a rank outside 1..{depth}, e.g. {example}")
        targets = np.full((len(items), depth), -1, np.int32)
        scores = np.zeros((len(items), depth), np.float32)
        counts = np.zeros((len(items), depth), np.float32)
        targets[row, slot] = col
        scores[row, slot] = neighbours["score"].to_numpy()
        counts[row, slot] = neighbours["count"].to_numpy()
        return cls(items, targets, scores, counts, method)


# ----------------------------------------------------------------------------------------------
# Sparse helpers
# ----------------------------------------------------------------------------------------------


def _descending_key(vals: np.ndarray) -> np.ndarray:
    """uint32 whose ascending order is the descending order of float32 ``vals`` (IEEE bit trick)."""
    bits = np.ascontiguousarray(vals, dtype=np.float32).view(np.uint32)
    ascending = np.where(bits & np.uint32(0x80000000), ~bits, bits | np.uint32(0x80000000))
    return ~ascending


def topk_sparse(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n_rows: int, k: int):
    """Per-row top-k of a coordinate list (no duplicate (row, col)), best first, ties in input order.

    One stable sort of a uint64 (row, descending value) key: no loop over rows.
    Returns (idx int32 [n_rows, k], val float32 [n_rows, k], sel int64 [kept]) with -1 / 0 padding;
    ``sel`` indexes the input entries that were kept, row-major in output order.
    """
    idx = np.full((n_rows, k), -1, np.int32)
    out = np.zeros((n_rows, k), np.float32)
    if len(rows) == 0 or k == 0:
        return idx, out, np.empty(0, np.int64)
    key = (np.asarray(rows).astype(np.uint64) << np.uint64(32)) | _descending_key(vals).astype(np.uint64)
    order = np.argsort(key, kind="stable")
    r = np.asarray(rows)[order]
    starts = np.searchsorted(r, np.arange(n_rows), side="left")
    slot = np.arange(len(r)) - starts[r]
    keep = slot < k
    sel = order[keep]
    idx[r[keep], slot[keep]] = np.asarray(cols)[sel]
    out[r[keep], slot[keep]] = np.asarray(vals)[sel]
    return idx, out, sel


def topk_csr(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, k: int):
    """Per-row top-k of a CSR matrix, best first (ties broken deterministically, not by position).

    Rows are grouped by length (powers of two), each group padded to its widest row (≤ 2× its
    entries) and cut with one argpartition: linear in nnz, one numpy call per group, no row loop.
    Returns (idx int32 [n_rows, k], val float32 [n_rows, k], sel int64 [n_rows, k] entry or -1).
    """
    n_rows = len(indptr) - 1
    idx = np.full((n_rows, k), -1, np.int32)
    val = np.zeros((n_rows, k), np.float32)
    sel = np.full((n_rows, k), -1, np.int64)
    lengths = np.diff(indptr)
    if k == 0 or len(data) == 0:
        return idx, val, sel
    group = np.ceil(np.log2(np.maximum(lengths, 1))).astype(np.int64)
    group[lengths == 0] = -1
    for g in np.unique(group[group >= 0]):  # ≤ 32 groups
        rows = np.flatnonzero(group == g)
        width = int(lengths[rows].max())
        pos = indptr[rows][:, None] + np.arange(width)[None, :]
        ok = np.arange(width)[None, :] < lengths[rows][:, None]
        pos = np.where(ok, pos, 0)
        vals = np.where(ok, data[pos], -np.inf).astype(np.float32)
        if width > k:
            part = np.argpartition(-vals, k - 1, axis=1)[:, :k]
        else:
            part = np.broadcast_to(np.arange(width), (len(rows), width))
        pv = np.take_along_axis(vals, part, axis=1)
        order = np.argsort(-pv, axis=1, kind="stable")
        part = np.take_along_axis(part, order, axis=1)
        pv = np.take_along_axis(pv, order, axis=1)
        entry = np.take_along_axis(pos, part, axis=1)
        filled = np.isfinite(pv)
        kk = part.shape[1]
        idx[rows, :kk] = np.where(filled, indices[entry], -1)
        val[rows, :kk] = np.where(filled, pv, 0.0)
        sel[rows, :kk] = np.where(filled, entry, -1)
    return idx, val, sel


def _item_blocks(work: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """Split rows into contiguous blocks whose summed ``work`` stays near ``budget``."""
    n = len(work)
    if n == 0:
        return []
    cum = np.cumsum(work, dtype=np.float64)
    bounds = [0]
    while bounds[-1] < n:
        base = cum[bounds[-1] - 1] if bounds[-1] > 0 else 0.0
        nxt = int(np.searchsorted(cum, base + budget, side="right"))
        bounds.append(min(n, max(nxt, bounds[-1] + 1)))
    return list(zip(bounds[:-1], bounds[1:]))


def _n_threads(n_threads: int | None) -> int:
    """Threads for the C++ products: ``n_threads``, else every core this process may run on."""
    if n_threads:
        return max(1, int(n_threads))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _idx_dtype(*mats: sp.csr_matrix):
    return np.int64 if max(max(m.nnz, *m.shape) for m in mats) >= np.iinfo(np.int32).max else np.int32


def _topn_product(left_t: sp.csr_matrix, right: sp.csr_matrix, top_n: int, n_threads: int, row_block: int = 1 << 20):
    """Each row's ``top_n`` largest entries of left_t @ right (> 0), by sparse_dot_topn's C++ kernel.

    The kernel keeps a per-thread dense accumulator over the columns; the columns are renumbered
    by descending support (stable), so the accumulator entries of popular items, which take most
    updates, share cache lines. Rows are visited heaviest first, dealt round-robin to the threads
    (OpenMP's static schedule hands each thread one contiguous run). Per-row results do not depend
    on the row order or thread count: a row sums its baskets in their order.
    Returns (idx int32 [n, top_n] original column or -1, val [n, top_n] in right's dtype, 0 where empty,
    col_rank int64 [n_cols]: a column's place in the support order).
    """
    from sparse_dot_topn import sp_matmul_topn  # C++ (OpenMP), a pinned dependency

    n, n_cols = left_t.shape[0], right.shape[1]
    idx = np.full((n, top_n), -1, np.int32)
    val = np.zeros((n, top_n), right.dtype)
    support = np.bincount(right.indices, minlength=n_cols)
    col_order = np.argsort(-support, kind="stable")
    col_rank = np.empty(n_cols, np.int64)
    col_rank[col_order] = np.arange(n_cols)
    if left_t.nnz == 0 or right.nnz == 0 or top_n == 0:
        return idx, val, col_rank
    # its own copy of the data: sort_indices below permutes it in place, and ``right`` is read again
    # where a cut falls inside a tie (_widen_tied_cuts)
    right_p = sp.csr_matrix((right.data.copy(), col_rank[right.indices].astype(right.indices.dtype), right.indptr), shape=right.shape)
    right_p.sort_indices()  # within a basket: by support, so first touches (and so kernel ties) follow it
    work = left_t @ np.diff(right.indptr).astype(np.float64)
    rows = np.argsort(-work, kind="stable")
    dtype = _idx_dtype(left_t, right)
    for a in range(0, n, row_block):
        block = rows[a : a + row_block]
        block = np.concatenate([block[t::n_threads] for t in range(n_threads)])
        c = sp_matmul_topn(left_t[block], right_p, top_n=top_n, threshold=0.0, sort=False, n_threads=n_threads, idx_dtype=dtype)
        lengths = np.diff(c.indptr)
        # flat positions row * top_n + slot (one 1-D scatter per array, not a 2-D fancy index)
        flat = np.repeat(block.astype(np.int64) * top_n - c.indptr[:-1], lengths) + np.arange(c.nnz)
        idx.ravel()[flat] = col_order[c.indices[: c.nnz]]
        val.ravel()[flat] = c.data[: c.nnz]
    return idx, val, col_rank


def _tied_at_cut(idx: np.ndarray, val32: np.ndarray, items: np.ndarray, depth: int) -> np.ndarray:
    """Rows (of a block whose row r is item ``items[r]``) whose cut may fall inside a tie: the kernel
    returned a full row and its smallest value is the row's ``depth``-th best, the item itself aside."""
    full = (idx >= 0).all(axis=1)
    others = np.where(idx == items[:, None].astype(np.int32), -np.inf, val32)
    cut = -np.partition(-others, depth - 1, axis=1)[:, depth - 1]
    return full & (val32.min(axis=1) >= cut) & np.isfinite(cut)


def _widen_tied_cuts(
    left_t: sp.csr_matrix, right: sp.csr_matrix, depth: int, idx: np.ndarray, val: np.ndarray, col_rank: np.ndarray, threads: int
) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's rows, with every row whose cut fell inside a tie replaced by its exact best
    entries under the index's order (score, then support rank), the item itself left out.

    The kernel keeps each row's ``top_n`` largest products but picks among equal values at its cut
    by its own accumulation order. Those rows (only those) are computed again at twice the width until
    the tie ends inside it; their best ``top_n`` under the order are written back in place, so the
    arrays keep their width and memory its bound."""
    width, n_cols = idx.shape[1], right.shape[1]
    if width <= depth:
        return idx, val
    pending = np.flatnonzero(_tied_at_cut(idx, val.astype(np.float32), np.arange(idx.shape[0]), depth))
    wide = width
    while pending.size:
        wide = min(2 * wide, n_cols)
        w_idx, w_val, _ = _topn_product(left_t[pending], right, wide, threads)
        w_val32 = w_val.astype(np.float32)
        done = ~_tied_at_cut(w_idx, w_val32, pending, depth) if wide < n_cols else np.ones(pending.size, bool)
        rows, w_idx, w_val, w_val32 = pending[done], w_idx[done], w_val[done], w_val32[done]
        key = (_descending_key(w_val32).astype(np.uint64) << np.uint64(32)) | col_rank[np.maximum(w_idx, 0)].astype(np.uint64)
        key[(w_idx < 0) | (w_idx == rows[:, None].astype(np.int32))] = np.iinfo(np.uint64).max
        best = np.argsort(key, axis=1)[:, :width]
        kept = np.take_along_axis(w_idx, best, axis=1)
        self_or_empty = np.take_along_axis(key, best, axis=1) == np.iinfo(np.uint64).max
        idx[rows] = np.where(self_or_empty, -1, kept)
        val[rows] = np.where(self_or_empty, 0, np.take_along_axis(w_val, best, axis=1))
        pending = pending[~done]
    return idx, val


def _topk_product(
    left_t: sp.csr_matrix,
    right: sp.csr_matrix,
    depth: int,
    *,
    count_scale: tuple[np.ndarray, np.ndarray] | None,
    ones: tuple[sp.csr_matrix, sp.csr_matrix] | None,
    block_nnz: int,
    n_threads: int | None,
    exact_ties: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-``depth`` of each row of left_t @ right without the diagonal: (targets, scores, counts).

    Scores are the product itself (normalizations are folded into the operands). Order: score,
    then the target's support (descending), then its position; only exact ties reach the last.
    Counts (raw support of each kept pair) come from ``count_scale = (row_scale, col_scale)`` when
    every product term is the same constant (count = value / (row_scale[i] · col_scale[j]); the
    product then runs in float64 so that this is exact), else from ``ones = (left_t, right)``
    binary operands, multiplied in item blocks of about ``block_nnz`` entries and read at the
    kept pairs only.
    """
    threads = _n_threads(n_threads)
    n = left_t.shape[0]
    idx, val, col_rank = _topn_product(left_t, right, depth + 1, threads)
    if exact_ties:
        idx, val = _widen_tied_cuts(left_t, right, depth, idx, val, col_rank, threads)
    val32 = val.astype(np.float32)
    width = idx.shape[1]
    # One sort per row on a uint64 key: descending score, then support rank; the item itself and
    # empty slots last (marked -1 in idx, so the kept slots read -1 there).
    idx[idx == np.arange(n, dtype=np.int32)[:, None]] = -1
    empty = idx < 0
    key = (_descending_key(val32).astype(np.uint64) << np.uint64(32)) | col_rank[np.maximum(idx, 0)].astype(np.uint64)
    key[empty] = np.iinfo(np.uint64).max
    # the kept slots as flat positions (1-D takes instead of take_along_axis)
    flat = (np.argsort(key, axis=1)[:, :depth] + (np.arange(n, dtype=np.int64) * width)[:, None]).ravel()
    targets = idx.ravel().take(flat).reshape(n, depth)
    dropped = targets < 0
    scores = np.where(dropped, np.float32(0.0), val32.ravel().take(flat).reshape(n, depth))
    if count_scale is not None:
        raw = val.ravel().take(flat).reshape(n, depth).astype(np.float64)
        scale = count_scale[0][:, None] * count_scale[1][np.maximum(targets, 0)]
        counts = np.where(dropped, 0.0, np.rint(raw / scale)).astype(np.float32)
        return targets, scores, counts
    counts = np.zeros((n, depth), np.float32)
    filled = ~dropped
    r, c = np.nonzero(filled)
    c = targets[r, c]
    from sparse_dot_topn import sp_matmul

    ones_left, ones_right = ones
    work = np.asarray(ones_left @ np.diff(ones_right.indptr).astype(np.float64)).ravel() + 1.0
    got = np.zeros(len(r), np.float32)
    dtype = _idx_dtype(ones_left, ones_right)
    for a, b in _item_blocks(work, block_nnz):
        lo, hi = np.searchsorted(r, [a, b])  # r is sorted (row-major nonzero)
        if lo == hi:
            continue
        prod = sp_matmul(ones_left[a:b], ones_right, n_threads=threads, idx_dtype=dtype)
        # Read the product at the kept pairs: an elementwise product with their pattern (one pass,
        # no sort of the product's indices), then each hit matched to its pair by key.
        keys = (r[lo:hi] - a).astype(np.int64) * ones_right.shape[1] + c[lo:hi]
        pick = sp.csr_matrix((np.ones(hi - lo, np.float32), (r[lo:hi] - a, c[lo:hi])), shape=prod.shape)
        hit = pick.multiply(prod).tocoo()
        order = np.argsort(keys)
        at = order[np.searchsorted(keys, hit.row.astype(np.int64) * ones_right.shape[1] + hit.col, sorter=order)]
        got[lo + at] = hit.data
    counts[filled] = got
    return targets, scores, counts


# ----------------------------------------------------------------------------------------------
# Preparing the events
# ----------------------------------------------------------------------------------------------


def _events(history: pl.DataFrame, items: IdIndex | None, weights: dict[str, float] | None):
    """(frame with dense u, i, w, t in µs, o = position in the event order (ts, seq); users; items)."""
    users = IdIndex.from_values(history["user_id"])
    items = items or IdIndex.from_values(history["item_id"])
    cols = ["user_id", "item_id", "event_type", "ts", "seq"] + (["session_id"] if "session_id" in history.columns else [])
    frame = with_event_position(history.select(cols), "o").with_columns(
        event_weight_expr(weights or EVENT_WEIGHTS).alias("w"),
        pl.col("ts").dt.epoch("us").alias("t"),
    )
    frame = frame.with_columns(
        pl.Series("u", users.positions(frame["user_id"])),
        pl.Series("i", items.positions(frame["item_id"])),
    ).filter(pl.col("i") >= 0)
    if "session_id" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, pl.Int64).alias("session_id"))
    return frame, users, items


def _cap_users(frame: pl.DataFrame, max_items_per_user: int | None) -> pl.DataFrame:
    """Keep each user's ``max_items_per_user`` most recently touched distinct items."""
    if not max_items_per_user:
        return frame
    # "most recent" is the latest position in the event order (ts, seq): no ties, and never an
    # order that depends on how items happen to be numbered
    last = (
        frame.group_by("u", "i")
        .agg(pl.col("o").max().alias("o_last"))
        .sort(["u", "o_last"], descending=[False, True])
        .with_columns(pl.int_range(1, pl.len() + 1).over("u").alias("recency"))
        .filter(pl.col("recency") <= max_items_per_user)
    )
    return frame.join(last.select("u", "i"), on=["u", "i"], how="semi")


def _baskets(frame: pl.DataFrame, window_hours: float | None) -> pl.DataFrame:
    """Add a dense ``basket`` id: (user, session) or per-user pseudo-session cut at long gaps."""
    frame = frame.sort("u", "o")
    gap = int(window_hours * 3600e6) if window_hours is not None else None
    new_user = pl.col("u") != pl.col("u").shift(1)
    has_sid = pl.col("session_id").is_not_null()
    new_sid = has_sid & (pl.col("session_id") != pl.col("session_id").shift(1)).fill_null(True)
    new_kind = has_sid != has_sid.shift(1)
    if gap is None:
        new_gap = pl.lit(False)
    else:
        new_gap = ~has_sid & ((pl.col("t") - pl.col("t").shift(1)) > gap)
    start = new_user.fill_null(True) | new_kind.fill_null(True) | new_sid | new_gap.fill_null(False)
    if frame["session_id"].null_count() < frame.height:
        # Sessions may interleave in time: order by session first so each is one contiguous run. A
        # user's sessions follow each other by their first event, never by session_id (a hash of the
        # user id in some sources): basket order decides float summation order in the products.
        first = pl.col("o").min().over("u", "session_id").alias("_first")
        frame = frame.with_columns(first).sort("u", pl.col("session_id").is_null(), "_first", "o").drop("_first")
    return frame.with_columns((start.cast(pl.Int64).cum_sum() - 1).alias("basket"))


# ----------------------------------------------------------------------------------------------
# Builders
# ----------------------------------------------------------------------------------------------


def build_cooc_index(
    history: pl.DataFrame,
    depth: int = 50,
    *,
    items: IdIndex | None = None,
    weights: dict[str, float] | None = None,
    window_hours: float | None = 24.0,
    max_items_per_user: int | None = 200,
    user_weighting: str = "log",
    normalize: str = "cosine",
    block_nnz: int = _BLOCK_NNZ,
    n_threads: int | None = None,
    exact_ties: bool = False,
) -> ItemIndex:
    """Session/time-windowed, behaviour-weighted co-occurrence index (see module docstring)."""
    if normalize not in ("cosine", "conditional", "none"):
        raise ValueError(f"normalize must be cosine|conditional|none, got {normalize!r}")
    if user_weighting not in ("log", "none"):
        raise ValueError(f"user_weighting must be log|none, got {user_weighting!r}")
    frame, users, items = _events(history, items, weights)
    frame = _baskets(_cap_users(frame, max_items_per_user), window_hours)
    cells = frame.group_by("basket", "i").agg(pl.col("w").max(), pl.col("u").first())
    basket = cells["basket"].to_numpy()
    n_baskets = int(basket.max()) + 1 if len(basket) else 0
    n_items = len(items)
    ii = cells["i"].to_numpy().astype(np.int32)
    w = cells["w"].to_numpy().astype(np.float32)
    b_w = sp.csr_matrix((w, (basket, ii)), shape=(n_baskets, n_items), dtype=np.float32)
    b_1 = sp.csr_matrix((np.ones_like(w), (basket, ii)), shape=(n_baskets, n_items), dtype=np.float32)
    if user_weighting == "log":
        n_u = np.bincount(frame.unique(["u", "i"])["u"].to_numpy(), minlength=len(users)).astype(np.float64)
        basket_user = np.zeros(n_baskets, np.int64)
        basket_user[basket] = cells["u"].to_numpy()
        uw = (1.0 / np.log1p(np.maximum(n_u[basket_user], 1.0))).astype(np.float32)
    else:
        uw = np.ones(n_baskets, np.float32)
    return cooc_from_baskets(
        b_w, uw, depth, items=items, normalize=normalize, binary=b_1, block_nnz=block_nnz, n_threads=n_threads, exact_ties=exact_ties
    )


def cooc_from_baskets(
    baskets: sp.csr_matrix,
    basket_weights: np.ndarray | None,
    depth: int,
    *,
    items: IdIndex | None = None,
    normalize: str = "cosine",
    binary: sp.csr_matrix | None = None,
    block_nnz: int = _BLOCK_NNZ,
    n_threads: int | None = None,
    exact_ties: bool = False,
) -> ItemIndex:
    """The co-occurrence core on a ready basket × item matrix (weights in the cells).

    ``basket_weights`` (None = 1) multiply each basket's contribution; ``binary`` (same pattern,
    ones; derived when None) gives the raw counts. ``items`` defaults to positions 0..n-1.
    ``n_threads`` (None = every available core) runs the C++ products; results do not depend on it.
    """
    if normalize not in ("cosine", "conditional", "none"):
        raise ValueError(f"normalize must be cosine|conditional|none, got {normalize!r}")
    baskets = sp.csr_matrix(baskets, dtype=np.float32)
    baskets.sum_duplicates()
    n_baskets, n_items = baskets.shape
    uw = np.ones(n_baskets, np.float32) if basket_weights is None else np.asarray(basket_weights, np.float32)
    basket_of = np.repeat(np.arange(n_baskets), np.diff(baskets.indptr))  # each cell's basket
    cell = baskets.data.astype(np.float64)
    self_mass = np.bincount(baskets.indices, cell * cell * uw[basket_of], minlength=n_items)
    self_mass[self_mass <= 0] = 1.0
    # Normalizations folded into the operands: row i of left_t scaled by ls_i, column j of right by rs_j.
    ones = np.ones(n_items)
    ls, rs = {"cosine": (1 / np.sqrt(self_mass),) * 2, "conditional": (1 / self_mass, ones), "none": (ones, ones)}[normalize]
    # Every term the same constant (binary cells, equal basket weights): the count is the value
    # over that constant, exact from a float64 product, so no second product is needed.
    uniform = baskets.nnz > 0 and baskets.data[0] > 0 and uw[0] > 0
    uniform = uniform and bool(np.all(baskets.data == baskets.data[0]) and np.all(uw == uw[0]))
    dtype = np.float64 if uniform else np.float32
    # Scaled in place of the data (same pattern), not by products with diagonal matrices.
    shape, pattern = baskets.shape, (baskets.indices, baskets.indptr)
    left_t = sp.csr_matrix(((cell * ls[baskets.indices]).astype(dtype), *pattern), shape=shape).T.tocsr()
    right = sp.csr_matrix(((cell * uw[basket_of] * rs[baskets.indices]).astype(dtype), *pattern), shape=shape)
    if uniform:
        term = float(baskets.data[0]) ** 2 * float(uw[0])
        count_scale, ones_ops = (ls * term, rs), None
    else:
        if binary is None:
            binary = baskets.copy()
            binary.data[:] = 1.0
        binary = sp.csr_matrix(binary, dtype=np.float32)
        count_scale, ones_ops = None, (binary.T.tocsr(), binary)
    targets, scores, counts = _topk_product(
        left_t, right, depth, count_scale=count_scale, ones=ones_ops, block_nnz=block_nnz, n_threads=n_threads, exact_ties=exact_ties
    )
    items = items or IdIndex(np.arange(n_items, dtype=np.int64))
    return ItemIndex(items, targets, scores, counts, method="cooc")


def swing_user_weights(n_items_per_user: np.ndarray) -> np.ndarray:
    """Alibaba's Swing user weight (|I_u| + 5)^-0.35: heavy users count less."""
    return np.power(n_items_per_user.astype(np.float64) + 5.0, -0.35)


def _pairs_within_groups(indptr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (p, q), p < q, of element positions sharing a group of a CSR/CSC ``indptr``."""
    sizes = np.diff(indptr)
    group = np.repeat(np.arange(len(sizes)), sizes)
    local = np.arange(indptr[-1]) - indptr[group]
    n_partners = (sizes[group] - 1 - local).astype(np.int64)
    left = np.repeat(np.arange(indptr[-1], dtype=np.int64), n_partners)
    starts = np.cumsum(n_partners) - n_partners
    right = left + 1 + (np.arange(len(left), dtype=np.int64) - np.repeat(starts, n_partners))
    return left, right


def build_swing_index(
    history: pl.DataFrame,
    depth: int = 50,
    *,
    items: IdIndex | None = None,
    alpha: float = 1.0,
    max_items_per_user: int | None = 200,
    max_users_per_item: int | None = 300,
    block_nnz: int = _BLOCK_NNZ,
    n_threads: int | None = None,
    exact_ties: bool = False,
) -> ItemIndex:
    """Swing index (see module docstring); ``counts`` = number of supporting user pairs."""
    frame, users, items = _events(history, items, None)
    frame = _cap_users(frame, max_items_per_user)
    ui = frame.group_by("u", "i").agg(pl.col("o").max())
    if max_users_per_item:  # the item's most recent users, by their last position in the event order
        ui = ui.filter(pl.col("o").rank("ordinal", descending=True).over("i") <= max_users_per_item)
    n_users, n_items = len(users), len(items)
    u = ui["u"].to_numpy().astype(np.int64)
    i = ui["i"].to_numpy().astype(np.int64)
    a_csc = sp.csc_matrix((np.ones(len(u), np.float32), (u, i)), shape=(n_users, n_items))
    a_csc.sort_indices()
    w_u = swing_user_weights(np.bincount(u, minlength=n_users))
    # Triples (u, v, item) with u < v both holding item: the user pairs' common items.
    p, q = _pairs_within_groups(a_csc.indptr)
    pu, pv = a_csc.indices[p].astype(np.int64), a_csc.indices[q].astype(np.int64)
    p_item = np.repeat(np.arange(n_items, dtype=np.int64), np.diff(a_csc.indptr))[p]
    del p, q
    pair_key, pair_row, overlap = np.unique(pu * n_users + pv, return_inverse=True, return_counts=True)
    # Only user pairs sharing ≥ 2 items contribute to an i ≠ j pair.
    useful = overlap >= 2
    remap = np.cumsum(useful) - 1
    keep_triple = useful[pair_row]
    rows = remap[pair_row[keep_triple]]
    cols = p_item[keep_triple]
    pk = pair_key[useful]
    k_weight = (w_u[pk // n_users] * w_u[pk % n_users] / (alpha + overlap[useful])).astype(np.float32)
    n_pairs = int(useful.sum())
    incidence = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_pairs, n_items))
    right = (sp.diags(k_weight) @ incidence).tocsr()
    left_t = incidence.T.tocsr()
    targets, scores, counts = _topk_product(
        left_t, right, depth, count_scale=None, ones=(left_t, incidence), block_nnz=block_nnz, n_threads=n_threads, exact_ties=exact_ties
    )
    return ItemIndex(items, targets, scores, counts, method="swing")


def build_item_index(history: pl.DataFrame, depth: int = 50, method: str = "cooc", **params) -> ItemIndex:
    if method == "cooc":
        return build_cooc_index(history, depth, **params)
    if method == "swing":
        return build_swing_index(history, depth, **params)
    raise ValueError(f"method must be cooc|swing, got {method!r}")


# ----------------------------------------------------------------------------------------------
# User triggers and the channel
# ----------------------------------------------------------------------------------------------
