"""Leave-one-user-out cross features for PRS training pairs.

API::

    own = own_contributions(history, users, items, **cooc_params)     # OwnCooc
    adj = loo_adjust(own, cooc, swing_at, swing_count_at, user, trig, tgt, slot)
    # -> LOOPairs(score, count, rank, swing): the pair's features without user ``user``'s contribution

Why: the index is built on the same events the training pairs come from, so a positive pair
(trigger i → target j of user u) carries u's own co-occurrence of i and j in its count, score and
rank. At serving the target is in the user's future, which the index never saw: a pair seen by one
user only is simply not in the index. Training on leaked counts teaches the model to trust counts
more than they deserve at serving.

What is subtracted. A candidate of a training example is never an item the user had before the
example's reference time (serving excludes seen items), so every basket of u that holds both i
and the candidate j holds a future event of u: u's whole contribution to (i, j) is leakage. With
B the weighted basket × item matrix and D the basket weights of ``build_cooc_index``:

- raw count'  = count − #{u's baskets holding i and j}                      (exact)
- C'_ij       = C_ij − Σ_{b of u} D_b B_bi B_bj, with C_ij recovered from the index score
- N'_j        = N_j − Σ_{b of u} D_b B_bj²   (the candidate's self-mass; all of it is u's future)
- score'      = C'_ij / √(N_i N'_j) (cosine), C'_ij / N_i (conditional), C'_ij (none). N_i keeps
  u's mass of the trigger, which serving also has (u's past). This is the approximation: the other
  users' future events stay in the index, and the pair's rank (below) is recomputed against the
  other list entries' unadjusted scores.
- rank'       = number of other entries of i's list scoring above score' (the list stays sorted).
- Swing: a pair supported by P user pairs has n users, P = n(n−1)/2; if u holds i and j, n − 1 of
  those pairs are u's: count' = P − (n − 1) and score' = score · (1 − 2/n) (u's pairs assumed of
  average weight; exact per-pair weights would need the user-pair table at training time).
  score' = 0 (n = 2) makes the pair "not in Swing".

Pairs u does not touch (j never in u's baskets) keep their index values bit for bit, so an
example at the end of a user's log featurizes exactly like serving. Everything is vectorized: the
(user, item) → baskets table is expanded per query with np.repeat and the cells are looked up
with one searchsorted; no loop over pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from recsys.channels.base import IdIndex
from recsys.channels.item_index import ItemIndex, _baskets, _cap_users, _descending_key, _events


@dataclass
class OwnCooc:
    """Each user's basket cells, as ``build_cooc_index`` weighs them."""

    n_items: int
    normalize: str
    self_mass: np.ndarray  # float64 [n_items], N_i
    ui_keys: np.ndarray  # int64 sorted, user * n_items + item
    ui_start: np.ndarray  # int64 [m], first entry of (u, i) in ui_baskets
    ui_len: np.ndarray  # int64 [m]
    ui_mass: np.ndarray  # float64 [m], Σ_b D_b B_bi² over u's baskets
    ui_baskets: np.ndarray  # int64, basket ids grouped by (u, i)
    ui_w: np.ndarray  # float64, B_bi of those entries
    cell_keys: np.ndarray  # int64 sorted, basket * n_items + item
    cell_w: np.ndarray  # float64 [cells]
    basket_w: np.ndarray  # float64 [n_baskets], D_b


def own_contributions(
    history: pl.DataFrame,
    users: IdIndex,
    items: IdIndex,
    *,
    weights: dict[str, float] | None = None,
    window_hours: float | None = 24.0,
    max_items_per_user: int | None = 200,
    user_weighting: str = "log",
    normalize: str = "cosine",
    **_ignored,
) -> OwnCooc:
    """Basket cells per user, built exactly as ``build_cooc_index`` builds them (same helpers)."""
    frame, _, _ = _events(history, items, weights)
    frame = _baskets(_cap_users(frame, max_items_per_user), window_hours)
    cells = frame.group_by("basket", "i").agg(pl.col("w").max(), pl.col("user_id").first())
    n_items = len(items)
    basket = cells["basket"].to_numpy().astype(np.int64)
    item = cells["i"].to_numpy().astype(np.int64)
    w = cells["w"].to_numpy().astype(np.float32).astype(np.float64)  # the index's float32 cells
    user = users.positions(cells["user_id"]).astype(np.int64)
    n_baskets = int(basket.max()) + 1 if len(basket) else 0
    # Basket weight: 1/log(1 + n_u), n_u = the user's distinct items after the cap (as build_cooc_index).
    basket_user = np.zeros(n_baskets, np.int64)
    basket_user[basket] = user
    if user_weighting == "log":
        distinct = frame.unique(["user_id", "i"])
        n_u = np.bincount(users.positions(distinct["user_id"]).astype(np.int64), minlength=len(users)).astype(np.float64)
        bw = (1.0 / np.log1p(np.maximum(n_u[basket_user], 1.0))).astype(np.float32).astype(np.float64)
    else:
        bw = np.ones(n_baskets, np.float64)
    self_mass = np.bincount(item, weights=bw[basket] * w * w, minlength=n_items)
    self_mass[self_mass <= 0] = 1.0
    ckeys = basket * n_items + item
    corder = np.argsort(ckeys, kind="stable")
    ukeys = user * n_items + item
    uorder = np.argsort(ukeys, kind="stable")
    sk = ukeys[uorder]
    starts = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]]) if len(sk) else np.empty(0, np.int64)
    lens = np.diff(np.r_[starts, len(sk)])
    mass = np.add.reduceat(bw[basket[uorder]] * w[uorder] ** 2, starts) if len(sk) else np.empty(0)
    return OwnCooc(
        n_items=n_items,
        normalize=normalize,
        self_mass=self_mass,
        ui_keys=sk[starts] if len(sk) else sk,
        ui_start=starts.astype(np.int64),
        ui_len=lens.astype(np.int64),
        ui_mass=mass,
        ui_baskets=basket[uorder],
        ui_w=w[uorder],
        cell_keys=ckeys[corder],
        cell_w=w[corder],
        basket_w=bw,
    )


def _find(keys: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(keys) == 0:
        return np.zeros(len(q), np.int64), np.zeros(len(q), bool)
    pos = np.clip(np.searchsorted(keys, q), 0, len(keys) - 1)
    return pos, keys[pos] == q


def user_pair_contribution(own: OwnCooc, user, trig, tgt) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """User ``user``'s part of each pair: (weighted C_u, raw count_u, own mass of tgt, user holds both)."""
    user = np.asarray(user, np.int64)
    n = own.n_items
    ii, has_i = _find(own.ui_keys, user * n + np.asarray(trig, np.int64))
    jj, has_j = _find(own.ui_keys, user * n + np.asarray(tgt, np.int64))
    both = np.flatnonzero(has_i & has_j)
    weighted = np.zeros(len(user), np.float64)
    count = np.zeros(len(user), np.float64)
    mass_j = np.where(has_j, own.ui_mass[jj] if len(own.ui_mass) else 0.0, 0.0)
    if len(both):
        # Every basket of (u, i), looked up in the cells of the target j.
        lens = own.ui_len[ii[both]]
        q = np.repeat(np.arange(len(both)), lens)
        offs = np.arange(len(q)) - np.repeat(np.cumsum(lens) - lens, lens)
        entry = own.ui_start[ii[both]][q] + offs
        b = own.ui_baskets[entry]
        cpos, found = _find(own.cell_keys, b * n + np.asarray(tgt, np.int64)[both][q])
        w_j = np.where(found, own.cell_w[cpos], 0.0)
        weighted[both] = np.bincount(q, weights=own.basket_w[b] * own.ui_w[entry] * w_j, minlength=len(both))
        count[both] = np.bincount(q, weights=found.astype(np.float64), minlength=len(both))
    return weighted, count, mass_j, has_i & has_j


@dataclass
class LOOPairs:
    score: np.ndarray  # float32, co-occurrence score without the user
    count: np.ndarray  # float32, raw count without the user
    rank: np.ndarray  # int64, 0-based rank among the list's other entries
    swing: np.ndarray | None  # float32, Swing score without the user (-1 = not in Swing)


def list_rank_keys(cooc: ItemIndex) -> np.ndarray:
    """uint64 keys (row << 32 | descending score key) of every slot, ascending (lists are sorted)."""
    desc = _descending_key(cooc.scores).astype(np.uint64)
    desc[cooc.targets < 0] = np.uint64(0xFFFFFFFF)  # empty slots after every filled one
    rows = np.arange(cooc.n_items, dtype=np.uint64)[:, None] << np.uint64(32)
    return (rows | desc).reshape(-1)


def loo_adjust(
    own: OwnCooc,
    cooc: ItemIndex,
    rank_keys: np.ndarray,
    swing_at: np.ndarray | None,
    swing_count_at: np.ndarray | None,
    user,
    trig,
    tgt,
    slot,
) -> LOOPairs:
    """Features of in-list pairs (``slot`` < depth) without user ``user``'s contribution (module docstring)."""
    trig = np.asarray(trig, np.int64)
    slot = np.asarray(slot, np.int64)
    score0 = cooc.scores[trig, slot].astype(np.float32)
    count0 = cooc.counts[trig, slot].astype(np.float32)
    c_u, n_u, mass_j, both = user_pair_contribution(own, user, trig, tgt)
    tgt = np.asarray(tgt, np.int64)
    changed = np.flatnonzero((n_u > 0) | (mass_j > 0))
    score, count, rank = score0.copy(), count0.copy(), slot.copy()
    if len(changed):
        t, j = trig[changed], tgt[changed]
        n_i, n_j = own.self_mass[t], own.self_mass[j]
        n_j_new = n_j - mass_j[changed]
        s0 = score0[changed].astype(np.float64)
        if own.normalize == "cosine":
            c = s0 * np.sqrt(n_i * n_j)
            new = np.maximum(c - c_u[changed], 0.0) / np.sqrt(n_i * np.maximum(n_j_new, 1e-12))
        elif own.normalize == "conditional":
            new = np.maximum(s0 * n_i - c_u[changed], 0.0) / n_i
        else:
            new = np.maximum(s0 - c_u[changed], 0.0)
        new = np.where(n_j_new <= 1e-9, 0.0, new).astype(np.float32)
        score[changed] = new
        count[changed] = np.maximum(count0[changed] - n_u[changed], 0.0)
        key = (t.astype(np.uint64) << np.uint64(32)) | _descending_key(new).astype(np.uint64)
        above = np.searchsorted(rank_keys, key, side="left").astype(np.int64) - t * cooc.depth
        above -= score0[changed] > new  # the pair's own (old) entry is not an "other" entry
        rank[changed] = np.maximum(above, 0)
    swing = None
    if swing_at is not None:
        swing = swing_at[trig, slot].astype(np.float32).copy()
        if swing_count_at is not None:
            hit = np.flatnonzero(both & (swing >= 0))
            p = swing_count_at[trig[hit], slot[hit]].astype(np.float64)
            n_users = (1.0 + np.sqrt(1.0 + 8.0 * p)) / 2.0
            left = p - (n_users - 1.0)
            new = (swing[hit] * np.clip(1.0 - 2.0 / np.maximum(n_users, 2.0), 0.0, 1.0)).astype(np.float32)
            swing[hit] = np.where(left > 0.5, new, -1.0)
    return LOOPairs(score, count, rank, swing)
