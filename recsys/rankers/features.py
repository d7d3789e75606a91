"""Ranker dataset: one row per (user, candidate item) with features computed from history only.

API::

    frame = build_ranker_frame(pool, history, items, users, selected_features, target=None,
                               cutoff=None, label_mode="binary", raw_scores=False)
    for block in iter_ranker_frames(..., block_users=20_000): ...   # the same frame, per block of users
    feature_columns(frame) -> list[str]          # every column except user_id, item_id, label
    categorical_columns(frame) -> list[str]      # the ``cat__*`` integer-coded columns
    holdout_users(user_ids, fraction, seed) -> np.ndarray[bool]   # seeded hash split
    grouped_ndcg_at_k(groups, labels, scores, k) -> float          # mean NDCG@k over groups

Inputs. ``pool``: user_id, item_id, ``{c}__score`` (Float64), ``{c}__rank`` (Int32), null where channel
``c`` did not retrieve the item, and ``n_channels``. ``history``: an interactions frame
(recsys.schema) strictly before the label window. ``target``: the label window's interactions.
``items``: item_id, category_id, attributes; ``users``: user_id, attributes.

Time. ``cutoff`` is the first instant of the label window: history rows at or after it are
ignored, and every recency/window feature is measured back from it. When ``cutoff`` is None (or
``"global"``) it is history's max ts (all history is used). ``target`` only ever produces ``label``.

Per-user cut-offs (leave-last-out; ``cutoff_mode_for(protocol)`` picks the mode). ``cutoff="per_user"``:
each user u has their own cut-off c_u, the ts of u's last history event (valid fold: last train
event; test fold: last train + valid event); a frame ``user_id, cutoff`` gives them explicitly (a
user absent from it, or without history, is measured at history's max ts). For a row (u, i) every
time-relative feature is then as of c_u: user features from u's events with ts <= c_u, measured
back from c_u; item features (i_pop … i_conv_rate) count only events of any user with ts <= c_u;
``ui_days_since_cat`` counts back from c_u; the co-occurrence features count only users whose first
events on both items are at or before c_u (each user's items still capped to their last 200 at
history's end: see docs/evaluation.md, "Per-user cut-offs"). Computed with prefix counts over
(item, ts)-sorted events and ``np.searchsorted`` on composite keys, no loop over rows.

Output columns (sorted by user_id, item_id):

- channels, for every channel ``c`` of the pool (``channel_names``), null where ``c`` did not
  retrieve the item (LightGBM treats null as missing); all but the raw score are unchanged by a
  positive rescaling of c's scores, so they survive the refit between the valid fold (channels fit
  on train) and the test fold (channels refit on train + valid, whose raw scores grow or shrink):
  ``{c}__rank`` Int32; ``{c}__rrank`` Float64 = rank / the deepest rank of c among the user's
  candidates (the length of c's list for that user when the pool kept it whole), in (0, 1];
  ``{c}__norm`` Float64 = the score min-max normalised over the user's candidates from c, in
  [0, 1] (1 when they all tie); ``{c}__ratio`` Float64 = score / max |score| over the user's
  candidates from c: the ratio to the user's best score for channels with non-negative scores, in
  [-1, 1] for channels that can score negative (1 when all are 0); ``{c}__hit`` Int8 0/1;
  ``{c}__score`` Float64 (the raw score) only with ``raw_scores=True``; ``n_channels``; and
  ``rrf`` Float64 and ``pool_rank`` Int32 (the pool's fusion score and order) when the pool has them.
- user: ``u_n_events, u_n_items, u_days_active, u_n_events_7d, u_recency_days, u_tenure_days,
  u_mean_rating`` (null without ``rate`` events).
- item: ``i_pop, i_n_users, i_pop_7d, i_pop_30d, i_trend`` (7d share of 30d), ``i_age_days``
  (since first event), ``i_mean_rating, i_n_ratings, i_conv_rate`` (cart/fav/buy share).
- user×item: ``ui_n_events`` (the user's events on the item), ``ui_cat_count, ui_cat_share`` (share of
  the user's events in the item's category), ``ui_days_since_cat``, ``ui_same_cat_last`` (item's
  category equals the category of the user's last item), ``ui_cooc_last1, ui_cooc_last3``
  (co-occurrence counts — users who interacted with both — of the candidate with the user's last 1
  and last 3 distinct items), ``ui_cos_last3`` (max cosine-normalized co-occurrence over those 3).
- ``cat__{f}`` Int32 codes for each selected categorical feature ``f`` (from users or items):
  codes are the sorted distinct values of the users/items frame, so two folds built from the same
  frames share one encoding; null stays null. List values are sorted and joined with ``|``.
- ``label`` Int32 when ``target`` is given. ``binary``: 1 if (user, item) occurs in target.
  ``graded``: the strongest event of the pair — view/click 1, fav 2, cart 3, buy 4, and for
  ``rate`` 1 for ratings <= 3, 2 for 4, 3 for 5 — so LambdaRank's 2^label - 1 gain favours them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.channels.base import IdIndex
from recsys.schema import with_event_position

ID_COLUMNS = ("user_id", "item_id")
LABEL = "label"
CAT_PREFIX = "cat__"
_DAY_US = 86_400_000_000.0
# Heavy users dominate co-occurrence counts and cost; only their most recent items count.
COOC_MAX_ITEMS_PER_USER = 200
# Per-user cut-offs: (query, item) pairs of co-occurrence enumerated per block (bounds memory).
COOC_PAIR_BLOCK = 1 << 23
_GRADE = {"view": 1, "click": 1, "fav": 2, "cart": 3, "buy": 4}
CUTOFF_MODES = ("global", "per_user")
_CUTOFF = "_cutoff"  # the reference time of a row (its user's cut-off), Datetime("us")
_WEEK_US, _MONTH_US = 7 * 86_400_000_000, 30 * 86_400_000_000


def channel_names(pool: pl.DataFrame) -> list[str]:
    """Channels present in a pool frame, in column order (those with both __score and __rank)."""
    cols = set(pool.columns)
    return [c[: -len("__score")] for c in pool.columns if c.endswith("__score") and c[: -len("__score")] + "__rank" in cols]


def feature_columns(frame: pl.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in ID_COLUMNS and c != LABEL]


def categorical_columns(frame: pl.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith(CAT_PREFIX)]


def cutoff_mode_for(protocol: str) -> str:
    """The ranker features' cut-off mode for a split protocol: ``per_user`` under leave-last-out
    (each user's test event is at their own time), ``global`` otherwise (one time cut for everyone)."""
    return "per_user" if protocol == "leave_last_out" else "global"


def _days_before(cutoff, col: str) -> pl.Expr:
    # Times the reciprocal, which is what polars' division of a column by a scalar computes; an explicit
    # product keeps it so when the column is a single row (polars then divides exactly), so a block of one
    # user gets the bits the whole frame gets.
    ref = cutoff if isinstance(cutoff, pl.Expr) else pl.lit(cutoff, dtype=pl.Datetime("us"))
    return ((ref - pl.col(col)).dt.total_microseconds() * (1.0 / _DAY_US)).cast(pl.Float64)


def _ratio(frame: pl.DataFrame, name: str, num: str, den: str) -> pl.Series:
    """num / den elementwise (null where either is null), in numpy: polars divides a column by a
    broadcast one-row column (a join against a single user) as a product with the reciprocal, whose
    last bit can differ, so the value would depend on how many users the frame holds."""
    with np.errstate(divide="ignore", invalid="ignore"):
        q = frame[num].cast(pl.Float64).to_numpy() / frame[den].cast(pl.Float64).to_numpy()
    return pl.Series(name, q, dtype=pl.Float64).fill_nan(None)


def _user_features(hist: pl.DataFrame) -> pl.DataFrame:
    """Per user, measured back from the user's ``_cutoff`` column (one value per user)."""
    return (
        hist.group_by("user_id")
        .agg(
            pl.len().cast(pl.Int64).alias("u_n_events"),
            pl.col("item_id").n_unique().cast(pl.Int64).alias("u_n_items"),
            pl.col("event_date").n_unique().cast(pl.Int64).alias("u_days_active"),
            (pl.col("ts") >= pl.col(_CUTOFF) - pl.duration(days=7)).sum().cast(pl.Int64).alias("u_n_events_7d"),
            pl.col("ts").max().alias("_last"),
            pl.col("ts").min().alias("_first"),
            pl.col("value").filter(pl.col("event_type") == "rate").mean().alias("u_mean_rating"),
            pl.col(_CUTOFF).first(),
        )
        .with_columns(
            _days_before(pl.col(_CUTOFF), "_last").alias("u_recency_days"), _days_before(pl.col(_CUTOFF), "_first").alias("u_tenure_days")
        )
        .drop("_last", "_first", _CUTOFF)
    )


def _item_features(hist: pl.DataFrame, cutoff) -> pl.DataFrame:
    week, month = cutoff - dt.timedelta(days=7), cutoff - dt.timedelta(days=30)
    return (
        hist.group_by("item_id")
        .agg(
            pl.len().cast(pl.Int64).alias("i_pop"),
            pl.col("user_id").n_unique().cast(pl.Int64).alias("i_n_users"),
            (pl.col("ts") >= week).sum().cast(pl.Int64).alias("i_pop_7d"),
            (pl.col("ts") >= month).sum().cast(pl.Int64).alias("i_pop_30d"),
            pl.col("ts").min().alias("_first"),
            pl.col("value").filter(pl.col("event_type") == "rate").mean().alias("i_mean_rating"),
            (pl.col("event_type") == "rate").sum().cast(pl.Int64).alias("i_n_ratings"),
            pl.col("event_type").is_in(["cart", "fav", "buy"]).mean().alias("i_conv_rate"),
        )
        .with_columns(
            (pl.col("i_pop_7d") / pl.col("i_pop_30d")).fill_nan(None).alias("i_trend"),
            _days_before(cutoff, "_first").alias("i_age_days"),
        )
        .drop("_first")
    )


class _TimePrefix:
    """Events keyed by (group, time), for many (group g, time x) queries at once: the slice [lo, hi) of
    g's events with time <= x (or < x) in (group, time) order. The key is group·(U+1) + rank(time)
    (U distinct times; ranks keep it inside int64 for any catalogue), sorted once; each query is
    two ``np.searchsorted`` calls, and sums of a weight over the slice come from its prefix sums."""

    def __init__(self, group: np.ndarray, t: np.ndarray, weights: dict[str, np.ndarray] | None = None):
        self.times = np.unique(t)
        self.stride = len(self.times) + 1
        key = np.asarray(group, np.int64) * self.stride + np.searchsorted(self.times, t)
        self.order = np.argsort(key, kind="stable")
        self.key = key[self.order]
        self.t = np.asarray(t)[self.order]
        self.cum = {k: np.concatenate(([0.0], np.cumsum(np.asarray(w, np.float64)[self.order]))) for k, w in (weights or {}).items()}

    def bounds(self, g: np.ndarray, x: np.ndarray, inclusive: bool = True) -> tuple[np.ndarray, np.ndarray]:
        g = np.asarray(g, np.int64)
        base = np.maximum(g, 0) * self.stride
        lo = np.searchsorted(self.key, base)
        hi = np.searchsorted(self.key, base + np.searchsorted(self.times, x, side="right" if inclusive else "left"))
        return lo, np.where(g >= 0, hi, lo)  # g < 0: an unknown group has no events

    def count(self, g: np.ndarray, x: np.ndarray, inclusive: bool = True) -> np.ndarray:
        lo, hi = self.bounds(g, x, inclusive)
        return hi - lo

    def total(self, name: str, g: np.ndarray, x: np.ndarray) -> np.ndarray:
        lo, hi = self.bounds(g, x)
        return self.cum[name][hi] - self.cum[name][lo]


def _epoch_us(s: pl.Series) -> np.ndarray:
    return s.cast(pl.Datetime("us")).dt.epoch("us").to_numpy()


def _nullable(name: str, values: np.ndarray) -> pl.Series:
    return pl.Series(name, values, dtype=pl.Float64).fill_nan(None)


class _ItemsAsOf:
    """``_item_features`` as of each row's ``_cutoff``: the (item, ts) prefix sums of the whole history
    are built once; each call answers one block of rows (item_id, _cutoff), counting only events with
    ts <= the row's _cutoff; the same columns, dtypes and nulls as ``_item_features`` (an item without
    events by then: counts 0, rest null). Rows are answered independently, so blocks change nothing."""

    def __init__(self, hist: pl.DataFrame):
        self.index = IdIndex.from_values(hist["item_id"])
        ev = hist.select(
            pl.col("event_type").is_not_null().cast(pl.Float64).alias("typed"),
            pl.col("event_type").is_in(["cart", "fav", "buy"]).fill_null(False).cast(pl.Float64).alias("conv"),
            (pl.col("event_type") == "rate").fill_null(False).cast(pl.Float64).alias("rate"),
            ((pl.col("event_type") == "rate") & pl.col("value").is_not_null()).fill_null(False).cast(pl.Float64).alias("rated"),
            pl.when(pl.col("event_type") == "rate").then(pl.col("value")).otherwise(None).fill_null(0.0).cast(pl.Float64).alias("rating"),
        )
        self.events = _TimePrefix(
            self.index.positions(hist["item_id"]),
            _epoch_us(hist["ts"]),
            {c: ev[c].to_numpy() for c in ("typed", "conv", "rate", "rated", "rating")},
        )
        firsts = hist.group_by("item_id", "user_id").agg(pl.col("ts").min())  # a user counts from their first event on the item
        self.users = _TimePrefix(self.index.positions(firsts["item_id"]), _epoch_us(firsts["ts"]))

    def __call__(self, rows: pl.DataFrame) -> pl.DataFrame:
        events = self.events
        g = self.index.positions(rows["item_id"]).astype(np.int64)
        at = _epoch_us(rows[_CUTOFF])
        lo, hi = events.bounds(g, at)
        pop = hi - lo
        pop_7d = pop - events.count(g, at - _WEEK_US, inclusive=False)
        pop_30d = pop - events.count(g, at - _MONTH_US, inclusive=False)
        has = pop > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            rated = events.total("rated", g, at)
            typed = events.total("typed", g, at)
            mean_rating = np.where(rated > 0, events.total("rating", g, at) / rated, np.nan)
            conv_rate = np.where(typed > 0, events.total("conv", g, at) / typed, np.nan)
            trend = np.where(pop_30d > 0, pop_7d / pop_30d, np.nan)
        first = events.t[np.minimum(lo, len(events.t) - 1)] if len(events.t) else np.zeros(len(g), np.int64)
        age = np.where(has, (at - first) / _DAY_US, np.nan)
        return pl.DataFrame(
            [
                pl.Series("i_pop", pop, dtype=pl.Int64),
                pl.Series("i_n_users", self.users.count(g, at), dtype=pl.Int64),
                pl.Series("i_pop_7d", pop_7d, dtype=pl.Int64),
                pl.Series("i_pop_30d", pop_30d, dtype=pl.Int64),
                _nullable("i_mean_rating", mean_rating),
                pl.Series("i_n_ratings", np.rint(events.total("rate", g, at)).astype(np.int64), dtype=pl.Int64),
                _nullable("i_conv_rate", conv_rate),
                _nullable("i_trend", trend),
                _nullable("i_age_days", age),
            ]
        )


def _last_items(hist: pl.DataFrame, n: int) -> pl.DataFrame:
    """Each user's n most recent distinct items: user_id, item_id, recency (1 = last in (ts, seq))."""
    return (
        with_event_position(hist)
        .group_by("user_id", "item_id")
        .agg(pl.col("_pos").max())
        .sort("user_id", "_pos", descending=[False, True])
        .with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("user_id").alias("recency"))
        .filter(pl.col("recency") <= n)
        .drop("_pos")
    )


def _pair_cooccurrence(item_users: sp.csr_matrix, user_items: sp.csr_matrix, a: np.ndarray, b: np.ndarray, block: int = 2048) -> np.ndarray:
    """C[a_j, b_j] for C = item_users @ user_items, computing only the rows of C named in ``a``."""
    out = np.zeros(len(a), dtype=np.float64)
    if len(a) == 0:
        return out
    order = np.argsort(a, kind="stable")
    a_sorted = a[order]
    uniq, starts = np.unique(a_sorted, return_index=True)
    bounds = np.append(starts, len(a_sorted))
    for s in range(0, len(uniq), block):
        rows = uniq[s : s + block]
        c_block = (item_users[rows] @ user_items).tocsr()
        lo, hi = bounds[s], bounds[min(s + block, len(uniq))]
        sel = order[lo:hi]
        local = np.searchsorted(rows, a[sel])
        out[sel] = np.asarray(c_block[local, b[sel]]).ravel()
    return out


_COOC = ("ui_cooc_last1", "ui_cooc_last3", "ui_cos_last3")


def _no_cooccurrence(pool_pairs: pl.DataFrame) -> pl.DataFrame:
    return pool_pairs.with_columns(pl.lit(None, pl.Float64).alias(c) for c in _COOC)


class _Cooccurrence:
    """ui_cooc_last1, ui_cooc_last3, ui_cos_last3 for (user_id, item_id) rows (global cut-off). The
    user × item matrix of every user's last COOC_MAX_ITEMS_PER_USER items, the item degrees and each
    user's last 3 items come from the whole history, once; each call answers one block of rows.
    ``pool_items``: every candidate item any block may ask about (dense positions only; values do not
    depend on them)."""

    def __init__(self, hist: pl.DataFrame, pool_items: pl.Series):
        recent = _last_items(hist, COOC_MAX_ITEMS_PER_USER)
        self.empty = recent.height == 0
        if self.empty:
            return
        self.users = IdIndex.from_values(recent["user_id"])
        self.items = IdIndex.from_values(pl.concat([recent["item_id"], pool_items.cast(recent.schema["item_id"])]))
        self.ui = sp.csr_matrix(
            (np.ones(recent.height, np.float32), (self.users.positions(recent["user_id"]), self.items.positions(recent["item_id"]))),
            shape=(len(self.users), len(self.items)),
        )
        self.iu = self.ui.T.tocsr()
        self.degree = np.asarray(self.ui.sum(axis=0)).ravel()
        self.last3 = np.full((len(self.users), 3), -1, dtype=np.int64)
        top = recent.filter(pl.col("recency") <= 3)
        self.last3[self.users.positions(top["user_id"]), top["recency"].to_numpy() - 1] = self.items.positions(top["item_id"])

    def __call__(self, pool_pairs: pl.DataFrame) -> pl.DataFrame:
        if self.empty:
            return _no_cooccurrence(pool_pairs)
        u = self.users.positions(pool_pairs["user_id"])
        cand = self.items.positions(pool_pairs["item_id"]).astype(np.int64)
        anchors = np.where(u[:, None] >= 0, self.last3[np.maximum(u, 0)], -1)  # rows × 3, -1 = none
        counts = np.zeros(anchors.shape, dtype=np.float64)
        valid = anchors >= 0
        rows, cols = np.nonzero(valid)
        counts[rows, cols] = _pair_cooccurrence(self.iu, self.ui, anchors[rows, cols], cand[rows])
        norm = np.sqrt(np.maximum(self.degree[np.maximum(anchors, 0)] * self.degree[cand][:, None], 1.0))
        cosine = np.where(valid, counts / norm, 0.0)
        has_history = u >= 0
        return pool_pairs.with_columns(
            pl.Series("ui_cooc_last1", np.where(has_history, counts[:, 0], np.nan)).fill_nan(None),
            pl.Series("ui_cooc_last3", np.where(has_history, counts.sum(axis=1), np.nan)).fill_nan(None),
            pl.Series("ui_cos_last3", np.where(has_history, cosine.max(axis=1), np.nan)).fill_nan(None),
        )


def _ragged(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + n) for each (s, n), without a loop."""
    lengths = np.asarray(lengths, np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    offsets = np.cumsum(lengths) - lengths
    return np.repeat(np.asarray(starts, np.int64) - offsets, lengths) + np.arange(total, dtype=np.int64)


def _chunks(sizes: np.ndarray, limit: int) -> list[tuple[int, int]]:
    """Consecutive ranges [s, e) whose sizes sum to at most ``limit`` (a single larger entry alone)."""
    cum = np.cumsum(np.asarray(sizes, np.int64))
    out, s, done = [], 0, 0
    while s < len(cum):
        e = min(max(int(np.searchsorted(cum, done + limit, side="right")), s + 1), len(cum))
        out.append((s, e))
        done, s = int(cum[e - 1]), e
    return out


def _cooccurrence_as_of(
    by_item: _TimePrefix, by_user: _TimePrefix, users_of_item: np.ndarray, items_of_user: np.ndarray, a, t, c, n_items: int, block: int
) -> np.ndarray:
    """For each j: how many users v have first events on both a[j] and c[j] at or before t[j].

    Per distinct query (a, t): the users of a by t (a prefix of a's time-sorted users), then each such
    user's items by t (a prefix of v's time-sorted items); the (query, item) pairs are counted with
    one sort per block of about ``block`` pairs and looked up with np.searchsorted."""
    out = np.zeros(len(a), np.float64)
    if len(a) == 0:
        return out
    order = np.lexsort((t, a))
    new = np.ones(len(a), bool)
    new[1:] = (a[order][1:] != a[order][:-1]) | (t[order][1:] != t[order][:-1])
    qid = np.empty(len(a), np.int64)
    qid[order] = np.cumsum(new) - 1
    qa, qt = a[order][new], t[order][new]
    entries = order  # entries sorted by query id (order sorts by (a, t), i.e. by qid)
    entry_q = qid[entries]
    lo1, hi1 = by_item.bounds(qa, qt)
    n1 = hi1 - lo1
    for qs, qe in _chunks(n1, block):
        q_rep = np.repeat(np.arange(qs, qe, dtype=np.int64), n1[qs:qe])
        v = users_of_item[_ragged(lo1[qs:qe], n1[qs:qe])]
        lo2, hi2 = by_user.bounds(v, qt[q_rep])
        n2 = hi2 - lo2
        row_start = np.concatenate(([0], np.cumsum(n1[qs:qe])))
        per_query = np.bincount(q_rep - qs, weights=n2, minlength=qe - qs).astype(np.int64)
        for ss, se in _chunks(per_query, block):
            r0, r1 = row_start[ss], row_start[se]
            keys = (np.repeat(q_rep[r0:r1], n2[r0:r1]) - (qs + ss)) * n_items + items_of_user[_ragged(lo2[r0:r1], n2[r0:r1])]
            e0, e1 = np.searchsorted(entry_q, [qs + ss, qs + se])
            sel = entries[e0:e1]
            want = (qid[sel] - (qs + ss)) * n_items + c[sel]
            if (se - ss) * n_items <= max(block, len(keys)):  # small enough to count densely
                out[sel] = np.bincount(keys, minlength=(se - ss) * n_items)[want]
            else:
                keys.sort()
                out[sel] = np.searchsorted(keys, want, side="right") - np.searchsorted(keys, want, side="left")
    return out


class _CooccurrenceAsOf:
    """``_Cooccurrence`` as of each row's ``_cutoff``: anchors are the user's last 3 distinct items in
    ``hist_u`` (their own events up to their cut-off); a user v counts for (anchor, candidate) when v's
    first events on both are at or before the cut-off; degrees likewise. v's items are the same capped
    set as in global mode (their last COOC_MAX_ITEMS_PER_USER at history's end). The time-sorted
    (item, user) structures come from the whole history, once; each call answers one block of rows
    with that block's users' ``hist_u``. ``pool_items``: every candidate item any block may ask about."""

    def __init__(self, hist: pl.DataFrame, pool_items: pl.Series):
        recent = _last_items(hist, COOC_MAX_ITEMS_PER_USER)
        self.empty = recent.height == 0
        if self.empty:
            return
        first = hist.group_by("user_id", "item_id").agg(pl.col("ts").min().alias("_f"))
        recent = recent.join(first, on=["user_id", "item_id"], how="left")
        users = IdIndex.from_values(recent["user_id"])
        # every item an anchor (a history item) or a candidate can be; dense positions only
        dtype = recent.schema["item_id"]
        self.items = IdIndex.from_values(pl.concat([recent["item_id"], hist["item_id"].cast(dtype), pool_items.cast(dtype)]))
        rv = users.positions(recent["user_id"]).astype(np.int64)
        ri = self.items.positions(recent["item_id"]).astype(np.int64)
        rf = _epoch_us(recent["_f"])
        self.by_item, self.by_user = _TimePrefix(ri, rf), _TimePrefix(rv, rf)
        self.users_of_item, self.items_of_user = rv[self.by_item.order], ri[self.by_user.order]

    def __call__(self, pool_pairs: pl.DataFrame, hist_u: pl.DataFrame) -> pl.DataFrame:
        anchors_frame = _last_items(hist_u, 3)
        if self.empty or anchors_frame.height == 0:
            return _no_cooccurrence(pool_pairs)
        items, by_item = self.items, self.by_item
        anchor_users = IdIndex.from_values(anchors_frame["user_id"])
        last3 = np.full((len(anchor_users), 3), -1, dtype=np.int64)
        slot = anchors_frame["recency"].to_numpy() - 1
        last3[anchor_users.positions(anchors_frame["user_id"]), slot] = items.positions(anchors_frame["item_id"])
        u = anchor_users.positions(pool_pairs["user_id"])
        cand = items.positions(pool_pairs["item_id"]).astype(np.int64)
        at = _epoch_us(pool_pairs[_CUTOFF])
        anchors = np.where(u[:, None] >= 0, last3[np.maximum(u, 0)], -1)
        valid = anchors >= 0
        rows, cols = np.nonzero(valid)
        a, t, c = anchors[rows, cols], at[rows], cand[rows]
        counts = np.zeros(anchors.shape, dtype=np.float64)
        counts[rows, cols] = _cooccurrence_as_of(
            by_item, self.by_user, self.users_of_item, self.items_of_user, a, t, c, len(items), COOC_PAIR_BLOCK
        )
        cosine = np.zeros(anchors.shape, dtype=np.float64)
        cosine[rows, cols] = counts[rows, cols] / np.sqrt(np.maximum(by_item.count(a, t) * by_item.count(c, t), 1.0))
        has_history = u >= 0
        return pool_pairs.with_columns(
            pl.Series("ui_cooc_last1", np.where(has_history, counts[:, 0], np.nan)).fill_nan(None),
            pl.Series("ui_cooc_last3", np.where(has_history, counts.sum(axis=1), np.nan)).fill_nan(None),
            pl.Series("ui_cos_last3", np.where(has_history, cosine.max(axis=1), np.nan)).fill_nan(None),
        )


def _channel_features(pool: pl.DataFrame, channels: list[str], raw_scores: bool) -> pl.DataFrame:
    """user_id, item_id and, per channel, the scale-free evidence (module docstring, "channels"),
    computed per user with window expressions over the user's rows of the pool."""
    per_channel = []
    for c in channels:
        score, rank = pl.col(f"{c}__score").cast(pl.Float64).fill_nan(None), pl.col(f"{c}__rank").cast(pl.Int32)
        lo, hi = score.min().over("user_id"), score.max().over("user_id")
        top = score.abs().max().over("user_id")
        per_channel += [
            *([score.alias(f"{c}__score")] if raw_scores else []),
            rank.alias(f"{c}__rank"),
            (rank.cast(pl.Float64) / rank.max().over("user_id").cast(pl.Float64)).alias(f"{c}__rrank"),
            pl.when(score.is_null()).then(None).when(hi > lo).then((score - lo) / (hi - lo)).otherwise(1.0).alias(f"{c}__norm"),
            pl.when(score.is_null()).then(None).when(top > 0).then(score / top).otherwise(1.0).alias(f"{c}__ratio"),
        ]
    pool_level = [pl.col("rrf").cast(pl.Float64)] if "rrf" in pool.columns else []
    pool_level += [pl.col("pool_rank").cast(pl.Int32)] if "pool_rank" in pool.columns else []
    return pool.select(
        pl.col("user_id").cast(pl.Int64),
        pl.col("item_id").cast(pl.Int64),
        *per_channel,
        *[pl.col(f"{c}__rank").is_not_null().cast(pl.Int8).alias(f"{c}__hit") for c in channels],
        *pool_level,
    )


def _encode_categorical(frame: pl.DataFrame, key: str, feature: str) -> pl.DataFrame:
    col = pl.col(feature)
    dtype = frame.schema[feature]
    if isinstance(dtype, (pl.List, pl.Array)):
        as_text = col.cast(pl.List(pl.Utf8)).list.sort().list.join("|")
    else:
        as_text = col.cast(pl.Utf8)
    values = frame.select(pl.col(key).cast(pl.Int64), as_text.alias("_v")).unique(key, keep="first")
    vocab = values["_v"].drop_nulls().unique().sort()
    codes = pl.DataFrame({"_v": vocab, CAT_PREFIX + feature: pl.int_range(0, len(vocab), dtype=pl.Int32, eager=True)})
    return values.join(codes, on="_v", how="left").drop("_v")


def _labels(target: pl.DataFrame, mode: str) -> pl.DataFrame:
    if mode == "binary":
        grade = pl.lit(1, dtype=pl.Int32)
    elif mode == "graded":
        rating_grade = 1 + (pl.col("value") >= 4).cast(pl.Int32) + (pl.col("value") >= 5).cast(pl.Int32)
        grade = (
            pl.when(pl.col("event_type") == "rate")
            .then(rating_grade)
            .otherwise(pl.col("event_type").replace_strict(_GRADE, default=1, return_dtype=pl.Int32))
        )
    else:
        raise ValueError(f"label_mode must be 'binary' or 'graded', got {mode!r}")
    return target.group_by("user_id", "item_id").agg(grade.max().cast(pl.Int32).alias(LABEL))


def build_ranker_frame(
    pool: pl.DataFrame,
    history: pl.DataFrame,
    items: pl.DataFrame,
    users: pl.DataFrame | None,
    selected_features: Sequence[str] = (),
    target: pl.DataFrame | None = None,
    *,
    cutoff=None,
    label_mode: str = "binary",
    raw_scores: bool = False,
) -> pl.DataFrame:
    """Join channel, user, item, user×item and categorical features (and the label) onto the pool.

    ``cutoff``: None or ``"global"`` (history's max ts), a datetime/date (the label window's start),
    ``"per_user"`` (each user's last history event) or a frame ``user_id, cutoff`` (module docstring).
    ``raw_scores``: keep each channel's raw ``{c}__score`` as a feature. Off by default: rankers learn
    on the valid fold and score the test fold, whose channels are refit on more data, so raw scores
    (EASE weights, co-occurrence sums) change scale between the two while ranks and the per-user
    normalised scores (``__rank``, ``__rrank``, ``__norm``, ``__ratio``) do not.

    The whole pool as one block of ``iter_ranker_frames``."""
    (frame,) = iter_ranker_frames(
        pool, history, items, users, selected_features, target, cutoff=cutoff, label_mode=label_mode, raw_scores=raw_scores
    )
    return frame


def iter_ranker_frames(
    pool: pl.DataFrame,
    history: pl.DataFrame,
    items: pl.DataFrame,
    users: pl.DataFrame | None,
    selected_features: Sequence[str] = (),
    target: pl.DataFrame | None = None,
    *,
    cutoff=None,
    label_mode: str = "binary",
    raw_scores: bool = False,
    block_users: int | None = None,
) -> Iterator[pl.DataFrame]:
    """``build_ranker_frame``'s frame in blocks of at most ``block_users`` of the pool's users (users in
    user_id order; None or 0: one block, the whole pool). Each block is sorted by user_id, item_id and
    the blocks follow each other in user_id order, so their concatenation is exactly
    ``build_ranker_frame``'s frame (same rows, columns, dtypes and values), while memory follows the block.

    What depends on more than the row's user is computed once, from the whole history: item features
    (global cut-off: grouped once; per-user cut-offs: the (item, ts) prefix sums), the co-occurrence
    structures (every user's capped items and first times), history's max ts (the reference time of users
    without history), categorical codes and labels. Per block: the pool's rows of the block's users (the
    channel features are per user), and the user, user × item, user × category and anchor features from
    the block's users' history rows only (history is sorted by user once and sliced, so the total work
    stays one pass over history, whatever the number of blocks)."""
    mode, user_cutoffs = "global", None
    if isinstance(cutoff, str):
        if cutoff not in CUTOFF_MODES:
            raise ValueError(f"cutoff must be one of {CUTOFF_MODES}, a datetime or a user_id/cutoff frame; got {cutoff!r}")
        mode, cutoff = cutoff, None
    elif isinstance(cutoff, pl.DataFrame):
        if not {"user_id", "cutoff"} <= set(cutoff.columns):
            raise ValueError(f"a per-user cutoff frame needs columns user_id, cutoff; got {cutoff.columns}")
        user_cutoffs = cutoff.select(pl.col("user_id").cast(pl.Int64), pl.col("cutoff").cast(pl.Datetime("us")).alias(_CUTOFF))
        if user_cutoffs["user_id"].is_duplicated().any():
            raise ValueError("the per-user cutoff frame has more than one row for some user_id")
        mode, cutoff = "per_user", None
    for name, frame, cols in (
        ("pool", pool, ID_COLUMNS),
        ("history", history, ("user_id", "item_id", "ts")),
        ("items", items, ("item_id", "category_id")),
    ):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} frame lacks columns {missing}")
    if history.height == 0 and cutoff is None:
        raise ValueError("history is empty and no cutoff was given: features have no reference time")
    if cutoff is None:
        cutoff = history["ts"].max()
        hist = history
    else:
        if isinstance(cutoff, dt.date) and not isinstance(cutoff, dt.datetime):
            cutoff = dt.datetime.combine(cutoff, dt.time())  # a label-window start date means its midnight
        hist = history.filter(pl.col("ts") < pl.lit(cutoff, dtype=pl.Datetime("us")))

    item_cat = items.select(pl.col("item_id").cast(pl.Int64), pl.col("category_id")).unique("item_id", keep="first")
    keep = ["user_id", "item_id", "event_type", "value", "ts", "event_date"] + (["seq"] if "seq" in hist.columns else [])
    hist = hist.select(keep).with_columns(pl.col("ts").cast(pl.Datetime("us"))).join(item_cat, on="item_id", how="left")

    # --- the parts that are not per user: once, from the whole history and frames
    encodings = []
    for feature in selected_features:
        in_users = users is not None and feature in users.columns and feature != "user_id"
        in_items = feature in items.columns and feature != "item_id"
        if in_users and in_items:
            raise ValueError(f"selected feature {feature!r} is a column of both users and items; rename one")
        if not (in_users or in_items):
            raise ValueError(f"selected feature {feature!r} is neither a users nor an items column")
        key, source = ("user_id", users) if in_users else ("item_id", items)
        encodings.append((key, _encode_categorical(source, key, feature)))
    labels = _labels(target, label_mode) if target is not None else None
    pool_items = pool["item_id"].cast(pl.Int64).unique(maintain_order=True)
    if mode == "per_user":
        items_part, cooc = _ItemsAsOf(hist), _CooccurrenceAsOf(hist, pool_items)
    else:
        items_part, cooc = _item_features(hist, cutoff), _Cooccurrence(hist, pool_items)
    whole = _Whole(pool, mode, cutoff, user_cutoffs, item_cat, items_part, cooc, encodings, labels, channel_names(pool), raw_scores)

    if not block_users or block_users <= 0 or pool.height == 0:
        yield whole.block(pool, hist)
        return
    # --- per block of users: the pool's and history's rows of those users, both sorted by user once
    pool_uid = pool["user_id"].cast(pl.Int64)
    if not pool_uid.is_sorted():
        pool = pool.sort("user_id", maintain_order=True)
        pool_uid = pool["user_id"].cast(pl.Int64)
    hist = hist.sort("user_id", maintain_order=True)  # stable: each user's rows keep their order
    pool_uid, hist_uid = pool_uid.to_numpy(), hist["user_id"].cast(pl.Int64).to_numpy()
    user_ids, starts = np.unique(pool_uid, return_index=True)
    starts = np.append(starts, len(pool_uid))
    for s in range(0, len(user_ids), block_users):
        e = min(s + block_users, len(user_ids))
        h0, h1 = np.searchsorted(hist_uid, user_ids[s], side="left"), np.searchsorted(hist_uid, user_ids[e - 1], side="right")
        yield whole.block(pool.slice(starts[s], starts[e] - starts[s]), hist.slice(h0, h1 - h0))


class _Whole:
    """What ``iter_ranker_frames`` computed once for the whole pool; ``block`` builds one block's frame."""

    def __init__(self, pool, mode, cutoff, user_cutoffs, item_cat, items_part, cooc, encodings, labels, channels, raw_scores):
        self.has_n_channels = "n_channels" in pool.columns
        self.mode, self.cutoff, self.user_cutoffs, self.item_cat = mode, cutoff, user_cutoffs, item_cat
        self.items_part, self.cooc, self.encodings, self.labels = items_part, cooc, encodings, labels
        self.channels, self.raw_scores = channels, raw_scores

    def block(self, pool: pl.DataFrame, hist: pl.DataFrame) -> pl.DataFrame:
        """The frame of ``pool``'s rows; ``hist``: at least every history row of ``pool``'s users (rows of
        other users change nothing: every feature computed here is per user)."""
        channels, cutoff, item_cat = self.channels, self.cutoff, self.item_cat
        out = _channel_features(pool, channels, self.raw_scores)
        if self.has_n_channels:
            out = out.with_columns(pool["n_channels"].cast(pl.Int32))
        else:
            out = out.with_columns(pl.sum_horizontal([pl.col(f"{c}__hit") for c in channels]).cast(pl.Int32).alias("n_channels"))
        if out.select(pl.struct(ID_COLUMNS).is_duplicated().any()).item():
            raise ValueError("pool has duplicate (user_id, item_id) rows; expected one row per pair")

        if self.mode == "per_user":
            user_cutoffs = self.user_cutoffs
            if user_cutoffs is None:
                user_cutoffs = hist.group_by("user_id").agg(pl.col("ts").max().alias(_CUTOFF))
            row_cutoff = pl.col(_CUTOFF).fill_null(pl.lit(cutoff, dtype=pl.Datetime("us")))
            # the user's own events up to their cut-off: every user-side feature reads these
            hist_u = hist.join(user_cutoffs, on="user_id", how="left").with_columns(row_cutoff).filter(pl.col("ts") <= pl.col(_CUTOFF))
            out = out.join(user_cutoffs, on="user_id", how="left").with_columns(row_cutoff)
        else:
            hist_u = hist.with_columns(pl.lit(cutoff, dtype=pl.Datetime("us")).alias(_CUTOFF))
            out = out.with_columns(pl.lit(cutoff, dtype=pl.Datetime("us")).alias(_CUTOFF))

        user_cat = (
            hist_u.group_by("user_id", "category_id")
            .agg(pl.len().cast(pl.Int64).alias("ui_cat_count"), pl.col("ts").max().alias("_cat_last"))
            .filter(pl.col("category_id").is_not_null())
        )
        last_cat = (
            _last_items(hist_u, 1).join(item_cat, on="item_id", how="left").select("user_id", pl.col("category_id").alias("_last_cat"))
        )
        user_item = hist_u.group_by("user_id", "item_id").agg(pl.len().cast(pl.Int64).alias("ui_n_events"))

        out = out.join(item_cat, on="item_id", how="left").join(_user_features(hist_u), on="user_id", how="left")
        if self.mode == "per_user":
            out = out.hstack(self.items_part(out))
        else:
            out = out.join(self.items_part, on="item_id", how="left")
        out = (
            out.join(user_item, on=ID_COLUMNS, how="left")
            .join(user_cat, on=["user_id", "category_id"], how="left")
            .join(last_cat, on="user_id", how="left")
            .with_columns(
                pl.col("ui_n_events").fill_null(0),
                pl.col("ui_cat_count").fill_null(0),
                pl.col("i_pop").fill_null(0),
                pl.col("i_n_users").fill_null(0),
                pl.col("i_pop_7d").fill_null(0),
                pl.col("i_pop_30d").fill_null(0),
                pl.col("i_n_ratings").fill_null(0),
            )
        )
        # A user without history has no share: null, not 0.
        out = (
            out.with_columns(_ratio(out, "ui_cat_share", "ui_cat_count", "u_n_events"))
            .with_columns(
                _days_before(pl.col(_CUTOFF), "_cat_last").alias("ui_days_since_cat"),
                (pl.col("category_id") == pl.col("_last_cat")).cast(pl.Int8).alias("ui_same_cat_last"),
            )
            .drop("_cat_last", "_last_cat", "category_id")
        )
        out = self.cooc(out, hist_u) if self.mode == "per_user" else self.cooc(out)
        out = out.drop(_CUTOFF)
        for key, codes in self.encodings:
            out = out.join(codes, on=key, how="left")
        if self.labels is not None:
            out = out.join(self.labels, on=ID_COLUMNS, how="left").with_columns(pl.col(LABEL).fill_null(0))
        return out.sort(ID_COLUMNS)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def holdout_users(user_ids, fraction: float, seed: int = 0) -> np.ndarray:
    """True for the users in the held-out slice: a seeded hash of user_id, stable across runs and folds."""
    ids = np.asarray(user_ids.to_numpy() if isinstance(user_ids, pl.Series) else user_ids).astype(np.int64)
    with np.errstate(over="ignore"):
        h = _splitmix64(ids.view(np.uint64) ^ _splitmix64(np.array([seed], dtype=np.int64).view(np.uint64)))
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53) < fraction


def grouped_ndcg_at_k(groups: np.ndarray, labels: np.ndarray, scores: np.ndarray, k: int = 10) -> float:
    """Mean NDCG@k (gain 2^label - 1, as LightGBM) over groups with a positive label.

    Ties in ``scores`` keep input order. Groups without a positive are skipped (their NDCG is undefined).
    """
    groups = np.asarray(groups)
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if len(groups) == 0:
        return float("nan")
    _, g = np.unique(groups, return_inverse=True)
    n_groups = g.max() + 1
    gain = np.exp2(labels) - 1.0

    def dcg(order_key: np.ndarray) -> np.ndarray:
        order = np.lexsort((np.arange(len(g)), -order_key, g))
        g_sorted = g[order]
        starts = np.searchsorted(g_sorted, np.arange(n_groups))
        pos = np.arange(len(g)) - starts[g_sorted]
        contrib = np.where(pos < k, gain[order] / np.log2(pos + 2.0), 0.0)
        return np.bincount(g_sorted, weights=contrib, minlength=n_groups)

    ideal = dcg(labels)
    actual = dcg(scores)
    has_pos = ideal > 0
    if not has_pos.any():
        return float("nan")
    return float(np.mean(actual[has_pos] / ideal[has_pos]))
