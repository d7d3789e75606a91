"""Popularity channel (stage ``pop``) and the popularity fallback every other channel uses.

API::

    PopularityChannel(mode="blend", half_life_days=7.0, n_top_categories=3,
                      blend_weights={"global": 0.2, "recent": 0.3, "category": 0.5},
                      weights=None, batch_size=2048, cutoff="global", dense=False)
        .fit(history, items=None, runtime=None) -> self
        .recommend(user_ids, k, exclude_seen=True) -> pl.DataFrame(user_id, item_id, score, rank)
        .item_scores() -> pl.DataFrame(item_id, score)        # the non-personal part, best first

Modes (every component is scaled to [0, 1] by its maximum):

* ``global``   -- sum of behaviour weights (EVENT_WEIGHTS) per item.
* ``recent``   -- the same sum with each event decayed by 0.5 ** (age_days / half_life_days), age
  measured from the history's latest ts (not the wall clock, so refits are reproducible).
* ``category`` -- needs ``items`` with ``category_id``: the user's behaviour share per category,
  kept for their ``n_top_categories`` categories, times the item's recent popularity relative to the
  most popular item of its category.  Items outside the user's top categories score 0.
* ``blend``    -- weighted sum of the three (category dropped when there are no categories).

Unknown users get the non-personal part (global / recent / their blend) with nothing excluded.

Reference time (``cutoff``). ``"global"`` (default): every component as of the history's latest ts.
``"per_user"`` (for leave-last-out, where each user's test event is at their own time): a known
user's global, recent and category components count only events with ts <= c_u, the ts of that
user's last history event, and ``recent`` decays from c_u, so no other user's later events reach
them. Computed by ``_PopularityAsOf`` (events sorted by ts, a running total advanced from one cut-off
to the next, a cumulative sum inside each block of users sorted by cut-off): O(events + users × items).
Unknown users, ``fallback_scores`` and ``item_scores`` stay as of the history's end.

Serving (``cutoff="global"``) scores a candidate set per user, not the whole catalogue: the head of
the static order (global/recent blend, k + |seen| items) and, in each of the user's top categories, the
items whose score bound static + w * affinity * max(cat_pop further down) reaches the k-th best score
found in that head (``_candidates``). Scores are the dense block's, bit for bit, and ties follow
topk_rows's rule (score, then dense position), so the lists equal the dense path's (``dense=True``,
kept as the reference; tests/recsys/test_channels.py). ``cutoff="per_user"`` stays dense.

Shared helpers for other channels: ``popularity_vector`` (weighted, optionally time-decayed item
popularity over an IdIndex), ``recommend_dense`` (batched scoring + top-k + popularity fallback
for users the channel never saw), ``recommend_sparse`` (the same from per-user candidate pairs) and
``ranked_order`` (item positions in topk_rows's order).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.channels.base import (
    IdIndex,
    batched,
    event_weight_expr,
    interaction_matrix,
    prefix_pairs,
    recs_frame,
    topk_rows,
    topk_sparse,
)

_MODES = ("global", "recent", "category", "blend")
_CUTOFFS = ("global", "per_user")
_EMPTY = {"user_id": pl.Int64, "item_id": pl.Int64, "score": pl.Float64, "rank": pl.Int32}


def popularity_vector(
    history: pl.DataFrame,
    items: IdIndex,
    half_life_days: float | None = None,
    weights: dict[str, float] | None = None,
) -> np.ndarray:
    """Behaviour-weighted interaction mass per item position (float32); decayed when half_life_days."""
    w = event_weight_expr(weights)
    if half_life_days is not None and history.height:
        age_days = (pl.col("ts").max() - pl.col("ts")).dt.total_seconds() / 86400.0
        w = w * (0.5 ** (age_days / float(half_life_days)))
    per_item = history.select("item_id", w.alias("w")).group_by("item_id").agg(pl.col("w").sum())
    pos = items.positions(per_item["item_id"])
    keep = pos >= 0
    out = np.zeros(len(items), np.float32)
    np.add.at(out, pos[keep], per_item["w"].to_numpy()[keep].astype(np.float32))
    return out


class _PopularityAsOf:
    """Behaviour-weighted item popularity, plain and decayed, as of many reference times at once.

    Events are sorted by ts. A running total (plain and decayed) is advanced from one reference time
    to the next with the events in between; the rows of a block of sorted reference times are that
    total plus a cumulative sum over the block's events, the decayed one anchored at the block's
    first time t0: r(c) = 0.5^((c - t0)/h) * (r(t0) + sum_{t0 < ts <= c} w * 2^((ts - t0)/h)). A
    block spans at most _SPAN half-lives, so 2^((ts - t0)/h) stays finite."""

    _SPAN = 200.0

    def __init__(self, history: pl.DataFrame, items: IdIndex, half_life_days: float, weights: dict[str, float] | None = None):
        frame = history.select(
            pl.col("ts").cast(pl.Datetime("us")).dt.epoch("us").alias("t"), "item_id", event_weight_expr(weights).alias("w")
        )
        pos = items.positions(frame["item_id"])
        keep = pos >= 0
        t = frame["t"].to_numpy()[keep]
        order = np.argsort(t, kind="stable")
        self.t = t[order]
        self.p = pos[keep][order].astype(np.int64)
        self.w = frame["w"].to_numpy()[keep][order].astype(np.float64)
        self.n = len(items)
        self.h = float(half_life_days) * 86_400e6
        self._reset()

    def _reset(self) -> None:
        self.k, self.t_at = 0, None
        self.g, self.r = np.zeros(self.n), np.zeros(self.n)

    def _advance(self, t: int) -> None:
        if self.t_at is not None and t < self.t_at:
            self._reset()
        k = int(np.searchsorted(self.t, t, side="right"))
        new = slice(self.k, k)
        if self.t_at is not None:
            self.r *= 0.5 ** ((t - self.t_at) / self.h)
        self.g += np.bincount(self.p[new], self.w[new], minlength=self.n)
        self.r += np.bincount(self.p[new], self.w[new] * 0.5 ** ((t - self.t[new]) / self.h), minlength=self.n)
        self.k, self.t_at = k, t

    def at(self, cutoffs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(plain, decayed) popularity, rows × items, of events with ts <= each cut-off (µs); rows in
        the order given. Cheapest when successive calls come in increasing cut-off order."""
        cutoffs = np.asarray(cutoffs, np.int64)
        order = np.argsort(cutoffs, kind="stable")
        ts = cutoffs[order]
        g_out, r_out = np.empty((len(ts), self.n)), np.empty((len(ts), self.n))
        s = 0
        while s < len(ts):
            e = int(np.searchsorted(ts, ts[s] + self._SPAN * self.h, side="right"))
            t0 = int(ts[s])
            self._advance(t0)
            k = np.searchsorted(self.t, ts[s:e], side="right")
            between = np.arange(k[0], k[-1])
            flat = np.searchsorted(k, between, side="right") * self.n + self.p[between]
            m = e - s
            dg = np.bincount(flat, self.w[between], minlength=m * self.n).reshape(m, self.n)
            g_out[s:e] = self.g + np.cumsum(dg, axis=0)
            dr = np.bincount(flat, self.w[between] * 2.0 ** ((self.t[between] - t0) / self.h), minlength=m * self.n).reshape(m, self.n)
            r_out[s:e] = (self.r + np.cumsum(dr, axis=0)) * (0.5 ** ((ts[s:e] - t0) / self.h))[:, None]
            s = e
        back = np.argsort(order)
        return g_out[back], r_out[back]


def _scaled_rows(m: np.ndarray) -> np.ndarray:
    top = m.max(axis=1, keepdims=True) if m.size else np.zeros((len(m), 1))
    return np.divide(m, top, out=m, where=top > 0)


def scaled(v: np.ndarray) -> np.ndarray:
    m = float(v.max()) if v.size else 0.0
    return v / m if m > 0 else v


def as_id_array(user_ids) -> np.ndarray:
    """Requested user ids as int64, de-duplicated in first-seen order."""
    if isinstance(user_ids, pl.Series):
        s = user_ids
    else:
        s = pl.Series("user_id", np.asarray(user_ids, dtype=np.int64).reshape(-1))
    return s.cast(pl.Int64).unique(maintain_order=True).to_numpy()


def _recommend_blocks(
    user_ids,
    k: int,
    users: IdIndex,
    items: IdIndex,
    rank_block: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    fallback: np.ndarray | None,
    batch_size: int,
) -> pl.DataFrame:
    """Known users in blocks of ``batch_size`` ranked by rank_block(user_positions) -> (top-k item
    positions, scores); users the channel does not know get top-k of ``fallback`` (or none)."""
    uids = as_id_array(user_ids)
    pos = users.positions(uids)
    known = pos >= 0
    frames = []
    # Blocks are cut in the channel's own user order (its IdIndex positions: label-free), not the
    # caller's (often id order): a dense block is a float32 GEMM, and OpenBLAS rounds a row's products
    # by where the row sits in the block (its edge kernels), so a user's scores, and the near-ties of
    # its top-k, would move with the ids of the users scored beside it. The output keeps the caller's order.
    order = np.argsort(pos[known], kind="stable")
    known_ids, known_pos = uids[known][order], pos[known][order]
    for s, e in batched(len(known_pos), batch_size):
        idx, val = rank_block(known_pos[s:e])
        frames.append(recs_frame(known_ids[s:e], idx, val, items))
    if len(frames) and (order[1:] < order[:-1]).any():  # back to the caller's user order
        ranked = pl.concat(frames)
        place = pl.DataFrame({"user_id": known_ids, "_in": order}, schema={"user_id": ranked.schema["user_id"], "_in": pl.Int64})
        frames = [ranked.join(place.unique("user_id", keep="first"), on="user_id", how="left").sort("_in", maintain_order=True).drop("_in")]
    cold_ids = uids[~known]
    if fallback is not None and len(cold_ids) and len(items):
        idx, val = topk_rows(fallback[None, :], k)
        n = len(cold_ids)
        frames.append(recs_frame(cold_ids, np.repeat(idx, n, axis=0), np.repeat(val, n, axis=0), items))
    if not frames:
        return pl.DataFrame(schema=_EMPTY)
    return pl.concat(frames)


def recommend_dense(
    user_ids,
    k: int,
    users: IdIndex,
    items: IdIndex,
    score_block: Callable[[np.ndarray], np.ndarray],
    seen: sp.csr_matrix | None,
    fallback: np.ndarray | None,
    batch_size: int = 2048,
) -> pl.DataFrame:
    """Score known users in dense blocks (score_block(user_positions) -> rows × n_items), take
    top-k with ``seen`` masked; users the channel does not know get top-k of ``fallback`` (or none)."""
    return _recommend_blocks(
        user_ids, k, users, items, lambda p: topk_rows(score_block(p), k, seen[p] if seen is not None else None), fallback, batch_size
    )


def recommend_sparse(
    user_ids,
    k: int,
    users: IdIndex,
    items: IdIndex,
    candidates: Callable[[np.ndarray, int, sp.csr_matrix | None], tuple[np.ndarray, np.ndarray, np.ndarray]],
    seen: sp.csr_matrix | None,
    fallback: np.ndarray | None,
    batch_size: int = 2048,
) -> pl.DataFrame:
    """recommend_dense for channels that can name, per user, a candidate set that provably holds the
    top-k: candidates(user_positions, k, seen_rows) -> (row, item position, score) pairs, rows indexing
    user_positions, scores exactly as the dense block would hold them. Top-k by topk_sparse, whose tie
    rule is topk_rows's, so the lists equal recommend_dense's on the full block."""

    def rank_block(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        seen_rows = seen[p] if seen is not None else None
        rows, cols, scores = candidates(p, k, seen_rows)
        return topk_sparse(rows, cols, scores, len(p), len(items), k, seen_rows)

    return _recommend_blocks(user_ids, k, users, items, rank_block, fallback, batch_size)


def ranked_order(scores: np.ndarray) -> np.ndarray:
    """Item positions by score descending, then position ascending (topk_rows's tie rule)."""
    return np.lexsort((np.arange(len(scores)), -np.asarray(scores, np.float32)))


def category_codes(items_frame: pl.DataFrame | None, items: IdIndex) -> tuple[np.ndarray, int]:
    """Dense category code per item position (-1 unknown) and the number of categories."""
    codes = np.full(len(items), -1, np.int32)
    if items_frame is None or "category_id" not in items_frame.columns:
        return codes, 0
    cats = (
        items_frame.select(pl.col("item_id").cast(pl.Int64), pl.col("category_id").cast(pl.Utf8))
        .drop_nulls()
        .unique("item_id", keep="first")
    )
    if cats.height == 0:
        return codes, 0
    dense = (cats["category_id"].rank("dense") - 1).cast(pl.Int32).to_numpy()
    pos = items.positions(cats["item_id"])
    keep = pos >= 0
    codes[pos[keep]] = dense[keep]
    return codes, int(dense.max()) + 1


class PopularityChannel:
    name = "pop"

    def __init__(
        self,
        mode: str = "blend",
        half_life_days: float = 7.0,
        n_top_categories: int = 3,
        blend_weights: dict[str, float] | None = None,
        weights: dict[str, float] | None = None,
        batch_size: int = 2048,
        cutoff: str = "global",
        dense: bool = False,
    ):
        if mode not in _MODES:
            raise ValueError(f"PopularityChannel mode {mode!r} not in {_MODES}")
        if cutoff not in _CUTOFFS:
            raise ValueError(f"PopularityChannel cutoff {cutoff!r} not in {_CUTOFFS}")
        self.cutoff = cutoff
        self.mode = mode
        self.half_life_days = half_life_days
        self.n_top_categories = n_top_categories
        self.blend_weights = blend_weights or {"global": 0.2, "recent": 0.3, "category": 0.5}
        self.weights = weights
        self.batch_size = batch_size
        self.dense = dense  # True: score users x catalogue in dense blocks (the reference the sparse path equals)

    def fit(self, history: pl.DataFrame, items: pl.DataFrame | None = None, runtime=None) -> PopularityChannel:
        self._sparse = None
        item_ids = history["item_id"]
        if items is not None:
            item_ids = pl.concat([item_ids, items["item_id"].cast(pl.Int64)])
        self.items_ = IdIndex.from_values(item_ids)
        self.users_ = IdIndex.from_values(history["user_id"])
        self.seen_ = interaction_matrix(history, self.users_, self.items_, self.weights)
        self.global_ = scaled(popularity_vector(history, self.items_, None, self.weights))
        self.recent_ = scaled(popularity_vector(history, self.items_, self.half_life_days, self.weights))
        self.cat_, self.n_cats_ = category_codes(items, self.items_)
        if self.mode == "category" and self.n_cats_ == 0:
            raise ValueError("PopularityChannel(mode='category') needs items with a category_id column")
        if self.n_cats_:
            # popularity relative to the best item of the same category
            cat_max = np.zeros(self.n_cats_, np.float32)
            has = self.cat_ >= 0
            np.maximum.at(cat_max, self.cat_[has], self.recent_[has])
            self.cat_pop_ = np.where(has, self.recent_ / np.maximum(cat_max[np.maximum(self.cat_, 0)], 1e-12), 0.0)
            self.cat_pop_ = self.cat_pop_.astype(np.float32)
            # user × category behaviour mass (users × n_cats), kept sparse
            onehot = sp.csr_matrix(
                (np.ones(has.sum(), np.float32), (np.flatnonzero(has), self.cat_[has])),
                shape=(len(self.items_), self.n_cats_),
            )
            self.user_cat_ = (self.seen_ @ onehot).tocsr()
        if self.cutoff == "per_user":
            self.as_of_ = _PopularityAsOf(history, self.items_, self.half_life_days, self.weights)
            last = history.group_by("user_id").agg(pl.col("ts").cast(pl.Datetime("us")).max().dt.epoch("us").alias("t"))
            self.user_cutoff_ = np.zeros(len(self.users_), np.int64)
            self.user_cutoff_[self.users_.positions(last["user_id"])] = last["t"].to_numpy()
            if self.n_cats_:
                with_cat = np.flatnonzero(self.cat_ >= 0)
                self.cat_order_ = with_cat[np.argsort(self.cat_[with_cat], kind="stable")]
                self.cat_present_, self.cat_starts_ = np.unique(self.cat_[self.cat_order_], return_index=True)
        return self

    def _cat_pop_rows(self, recent: np.ndarray) -> np.ndarray:
        """cat_pop_ for each row of per-user recent popularity: relative to the best item of its category."""
        cat_max = np.zeros((len(recent), self.n_cats_))
        cat_max[:, self.cat_present_] = np.maximum.reduceat(recent[:, self.cat_order_], self.cat_starts_, axis=1)
        return np.where(self.cat_ >= 0, recent / np.maximum(cat_max[:, np.maximum(self.cat_, 0)], 1e-12), 0.0)

    def _score_block_as_of(self, user_pos: np.ndarray) -> np.ndarray:
        g, r = self.as_of_.at(self.user_cutoff_[user_pos])
        g, r = _scaled_rows(g), _scaled_rows(r)
        w = self._weights()
        block = w.get("global", 0.0) * g + w.get("recent", 0.0) * r
        if w.get("category", 0.0):
            block += w["category"] * self._category_block(user_pos, self._cat_pop_rows(r))
        return block.astype(np.float32)

    def _weights(self) -> dict[str, float]:
        if self.mode != "blend":
            return {self.mode: 1.0}
        w = dict(self.blend_weights)
        if not self.n_cats_:
            w.pop("category", None)
        return w

    def _static(self) -> np.ndarray:
        w = self._weights()
        return (w.get("global", 0.0) * self.global_ + w.get("recent", 0.0) * self.recent_).astype(np.float32)

    def _top_affinity(self, user_pos: np.ndarray) -> np.ndarray:
        """users x (n_cats + 1): behaviour share per category, all but each user's top categories zeroed;
        the last column (category -1 = none) is 0."""
        aff = self.user_cat_[user_pos].toarray()
        total = aff.sum(axis=1, keepdims=True)
        aff = np.divide(aff, total, out=np.zeros_like(aff), where=total > 0)
        if self.n_top_categories < self.n_cats_:
            # zero all but each user's top categories
            drop = np.argpartition(-aff, self.n_top_categories - 1, axis=1)[:, self.n_top_categories :]
            np.put_along_axis(aff, drop, 0.0, axis=1)
        return np.concatenate([aff, np.zeros((len(user_pos), 1), aff.dtype)], axis=1)  # column -1 = no category

    def _category_block(self, user_pos: np.ndarray, cat_pop: np.ndarray | None = None) -> np.ndarray:
        aff = self._top_affinity(user_pos)
        return aff[:, self.cat_] * (self.cat_pop_[None, :] if cat_pop is None else cat_pop)

    def _sparse_index(self) -> dict:
        """What the sparse path reuses across batches: the static order of the catalogue and, per category,
        its items by static descending (position ascending) with the suffix maximum of cat_pop_."""
        if getattr(self, "_sparse", None) is None:
            static = self._static()
            index = {"static": static, "order": ranked_order(static)}
            if self.n_cats_:
                with_cat = index["order"][self.cat_[index["order"]] >= 0]
                by_cat = with_cat[np.argsort(self.cat_[with_cat], kind="stable")]  # static order kept inside a category
                counts = np.bincount(self.cat_[by_cat], minlength=self.n_cats_)
                starts = np.cumsum(counts) - counts
                cp = self.cat_pop_[by_cat]
                # suffix maximum of cat_pop_ inside each category's list
                suffix = np.empty_like(cp)
                for c in np.flatnonzero(counts):
                    seg = cp[starts[c] : starts[c] + counts[c]]
                    suffix[starts[c] : starts[c] + counts[c]] = np.maximum.accumulate(seg[::-1])[::-1]
                index |= {"by_cat": by_cat, "cat_start": starts, "cat_len": counts, "cp_suffix": suffix}
            self._sparse = index
        return self._sparse

    def _candidates(self, user_pos: np.ndarray, k: int, seen_rows: sp.csr_matrix | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, item, score) pairs holding each user's top-k, scores bit-identical to _score_block's.

        score = static + wc * aff[cat] * cat_pop >= static. Items outside the user's top categories score
        static, so those past the first k + |seen| of the static order never make the top-k (each of those
        k + |seen| items is ahead of them). Inside a top category c the exact score of the item at rank r
        of c's static order is at most ub(r) = static_r + wc * aff_c * max(cat_pop from r on), which falls
        with r; theta = the k-th best unseen exact score among the static head is a lower bound of the
        k-th best overall, so c's items from the first r with ub(r) < theta on are out (binary search)."""
        index = self._sparse_index()
        static, n = index["static"], len(self.items_)
        n_seen = np.diff(seen_rows.indptr) if seen_rows is not None else np.zeros(len(user_pos), np.int64)
        rows, cols = prefix_pairs(index["order"], np.minimum(k + n_seen, n))
        wc = self._weights().get("category", 0.0)
        if not wc:
            return rows, cols, static[cols]
        aff = self._top_affinity(user_pos)

        def exact(r: np.ndarray, c: np.ndarray) -> np.ndarray:
            # the dense block's arithmetic, element by element: static + wc * (aff[cat] * cat_pop), float32
            return static[c] + wc * (aff[r, self.cat_[c]] * self.cat_pop_[c])

        scores = exact(rows, cols)
        _, head = topk_sparse(rows, cols, scores, len(user_pos), n, k, seen_rows)
        theta = head[:, -1] if head.shape[1] else np.full(len(user_pos), -np.inf, np.float32)
        urow, ucat = np.nonzero(aff[:, :-1] > 0)
        a = aff[urow, ucat]
        start, length = index["cat_start"][ucat], index["cat_len"][ucat]
        by_cat, suffix = index["by_cat"], index["cp_suffix"]
        lo, hi = np.zeros(len(urow), np.int64), length.astype(np.int64)
        while (open_ := lo < hi).any():
            mid = (lo + hi) // 2
            at = start + np.minimum(mid, np.maximum(length - 1, 0))
            ub = static[by_cat[at]] + wc * (a * suffix[at])
            ok = open_ & (ub >= theta[urow])
            lo = np.where(ok, mid + 1, lo)
            hi = np.where(open_ & ~ok, mid, hi)
        extra_rows, extra_cols = prefix_pairs(by_cat, lo, start)
        extra_rows = urow[extra_rows]
        rows, cols = np.concatenate([rows, extra_rows]), np.concatenate([cols, extra_cols])
        return rows, cols, np.concatenate([scores, exact(extra_rows, extra_cols)])

    def _score_block(self, user_pos: np.ndarray) -> np.ndarray:
        if self.cutoff == "per_user":
            return self._score_block_as_of(user_pos)
        block = np.broadcast_to(self._static(), (len(user_pos), len(self.items_))).copy()
        wc = self._weights().get("category", 0.0)
        if wc:
            block += wc * self._category_block(user_pos)
        return block

    def recommend(self, user_ids, k: int, exclude_seen: bool = True) -> pl.DataFrame:
        if self.cutoff == "per_user":
            # score users in cut-off order (each block advances the running totals), then restore the
            # request order: known users first, unknown (fallback) users after, as recommend_dense does
            uids = as_id_array(user_ids)
            pos = self.users_.positions(uids)
            order = np.argsort(np.where(pos >= 0, self.user_cutoff_[np.maximum(pos, 0)], np.iinfo(np.int64).max), kind="stable")
            request = pl.DataFrame({"user_id": uids, "_req": np.arange(len(uids)) + len(uids) * (pos < 0)})
            recs = self._recommend(uids[order], k, exclude_seen)
            return recs.join(request, on="user_id", how="left").sort("_req", "rank", maintain_order=True).drop("_req")
        return self._recommend(user_ids, k, exclude_seen)

    def _recommend(self, user_ids, k: int, exclude_seen: bool) -> pl.DataFrame:
        if self.cutoff == "global" and not self.dense:
            return recommend_sparse(
                user_ids,
                k,
                self.users_,
                self.items_,
                self._candidates,
                self.seen_ if exclude_seen else None,
                self.fallback_scores(),
                self.batch_size,
            )
        return recommend_dense(
            user_ids,
            k,
            self.users_,
            self.items_,
            self._score_block,
            self.seen_ if exclude_seen else None,
            self.fallback_scores(),
            self.batch_size,
        )

    def fallback_scores(self) -> np.ndarray:
        """Non-personal score per item position (what unknown users get)."""
        static = self._static()
        return static if static.max(initial=0.0) > 0 else self.recent_

    def item_scores(self) -> pl.DataFrame:
        s = self.fallback_scores()
        # ties in dense-position order (first appearance in the event order), never by item id
        return pl.DataFrame({"item_id": self.items_.ids, "score": s.astype(np.float64)}).sort("score", descending=True, maintain_order=True)
