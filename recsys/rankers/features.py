"""Ranker dataset: one row per (user, candidate item) with features computed from history only.

API::

    frame = build_ranker_frame(pool, history, items, users, selected_features, target=None,
                               cutoff=None, label_mode="binary")
    feature_columns(frame) -> list[str]          # every column except user_id, item_id, label
    categorical_columns(frame) -> list[str]      # the ``cat__*`` integer-coded columns
    holdout_users(user_ids, fraction, seed) -> np.ndarray[bool]   # seeded hash split
    grouped_ndcg_at_k(groups, labels, scores, k) -> float          # mean NDCG@k over groups

Inputs. ``pool``: user_id, item_id, ``{c}__score`` (Float64), ``{c}__rank`` (Int32), null where channel
``c`` did not retrieve the item, and ``n_channels``. ``history``: an interactions frame
(recsys.schema) strictly before the label window. ``target``: the label window's interactions.
``items``: item_id, category_id, attributes; ``users``: user_id, attributes.

Time. ``cutoff`` is the first instant of the label window: history rows at or after it are
ignored, and every recency/window feature is measured back from it. When ``cutoff`` is None it is
history's max ts (all history is used). ``target`` only ever produces ``label``.

Output columns (sorted by user_id, item_id):

- channels: ``{c}__score`` Float64, ``{c}__rank`` Int32 (nulls kept: LightGBM treats them as
  missing), ``{c}__hit`` Int8 0/1, ``n_channels``.
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
from collections.abc import Sequence

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
_GRADE = {"view": 1, "click": 1, "fav": 2, "cart": 3, "buy": 4}


def channel_names(pool: pl.DataFrame) -> list[str]:
    """Channels present in a pool frame, in column order (those with both __score and __rank)."""
    cols = set(pool.columns)
    return [c[: -len("__score")] for c in pool.columns if c.endswith("__score") and c[: -len("__score")] + "__rank" in cols]


def feature_columns(frame: pl.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in ID_COLUMNS and c != LABEL]


def categorical_columns(frame: pl.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith(CAT_PREFIX)]


def _days_before(cutoff, col: str) -> pl.Expr:
    return ((pl.lit(cutoff, dtype=pl.Datetime("us")) - pl.col(col)).dt.total_microseconds() / _DAY_US).cast(pl.Float64)


def _user_features(hist: pl.DataFrame, cutoff) -> pl.DataFrame:
    week = cutoff - dt.timedelta(days=7)
    return (
        hist.group_by("user_id")
        .agg(
            pl.len().cast(pl.Int64).alias("u_n_events"),
            pl.col("item_id").n_unique().cast(pl.Int64).alias("u_n_items"),
            pl.col("event_date").n_unique().cast(pl.Int64).alias("u_days_active"),
            (pl.col("ts") >= week).sum().cast(pl.Int64).alias("u_n_events_7d"),
            pl.col("ts").max().alias("_last"),
            pl.col("ts").min().alias("_first"),
            pl.col("value").filter(pl.col("event_type") == "rate").mean().alias("u_mean_rating"),
        )
        .with_columns(_days_before(cutoff, "_last").alias("u_recency_days"), _days_before(cutoff, "_first").alias("u_tenure_days"))
        .drop("_last", "_first")
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


def _cooccurrence_features(pool_pairs: pl.DataFrame, hist: pl.DataFrame) -> pl.DataFrame:
    """ui_cooc_last1, ui_cooc_last3, ui_cos_last3 for each (user_id, item_id) of the pool."""
    recent = _last_items(hist, COOC_MAX_ITEMS_PER_USER)
    if recent.height == 0:
        return pool_pairs.with_columns(pl.lit(None, pl.Float64).alias(c) for c in ("ui_cooc_last1", "ui_cooc_last3", "ui_cos_last3"))
    users = IdIndex.from_values(recent["user_id"])
    items = IdIndex.from_values(pl.concat([recent["item_id"], pool_pairs["item_id"]]))
    ui = sp.csr_matrix(
        (np.ones(recent.height, np.float32), (users.positions(recent["user_id"]), items.positions(recent["item_id"]))),
        shape=(len(users), len(items)),
    )
    iu = ui.T.tocsr()
    degree = np.asarray(ui.sum(axis=0)).ravel()

    last3 = np.full((len(users), 3), -1, dtype=np.int64)
    top = recent.filter(pl.col("recency") <= 3)
    last3[users.positions(top["user_id"]), top["recency"].to_numpy() - 1] = items.positions(top["item_id"])

    u = users.positions(pool_pairs["user_id"])
    cand = items.positions(pool_pairs["item_id"]).astype(np.int64)
    anchors = np.where(u[:, None] >= 0, last3[np.maximum(u, 0)], -1)  # rows × 3, -1 = none
    counts = np.zeros(anchors.shape, dtype=np.float64)
    valid = anchors >= 0
    rows, cols = np.nonzero(valid)
    counts[rows, cols] = _pair_cooccurrence(iu, ui, anchors[rows, cols], cand[rows])
    norm = np.sqrt(np.maximum(degree[np.maximum(anchors, 0)] * degree[cand][:, None], 1.0))
    cosine = np.where(valid, counts / norm, 0.0)
    has_history = u >= 0
    return pool_pairs.with_columns(
        pl.Series("ui_cooc_last1", np.where(has_history, counts[:, 0], np.nan)).fill_nan(None),
        pl.Series("ui_cooc_last3", np.where(has_history, counts.sum(axis=1), np.nan)).fill_nan(None),
        pl.Series("ui_cos_last3", np.where(has_history, cosine.max(axis=1), np.nan)).fill_nan(None),
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
) -> pl.DataFrame:
    """Join channel, user, item, user×item and categorical features (and the label) onto the pool."""
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

    channels = channel_names(pool)
    out = pool.select(
        pl.col("user_id").cast(pl.Int64),
        pl.col("item_id").cast(pl.Int64),
        *[e for c in channels for e in (pl.col(f"{c}__score").cast(pl.Float64), pl.col(f"{c}__rank").cast(pl.Int32))],
        *[pl.col(f"{c}__rank").is_not_null().cast(pl.Int8).alias(f"{c}__hit") for c in channels],
    )
    if "n_channels" in pool.columns:
        out = out.with_columns(pool["n_channels"].cast(pl.Int32))
    else:
        out = out.with_columns(pl.sum_horizontal([pl.col(f"{c}__hit") for c in channels]).cast(pl.Int32).alias("n_channels"))
    if out.select(pl.struct(ID_COLUMNS).is_duplicated().any()).item():
        raise ValueError("pool has duplicate (user_id, item_id) rows; expected one row per pair")

    item_cat = items.select(pl.col("item_id").cast(pl.Int64), pl.col("category_id")).unique("item_id", keep="first")
    keep = ["user_id", "item_id", "event_type", "value", "ts", "event_date"] + (["seq"] if "seq" in hist.columns else [])
    hist = hist.select(keep).join(item_cat, on="item_id", how="left")

    user_cat = (
        hist.group_by("user_id", "category_id")
        .agg(pl.len().cast(pl.Int64).alias("ui_cat_count"), pl.col("ts").max().alias("_cat_last"))
        .filter(pl.col("category_id").is_not_null())
    )
    last_cat = _last_items(hist, 1).join(item_cat, on="item_id", how="left").select("user_id", pl.col("category_id").alias("_last_cat"))
    user_item = hist.group_by("user_id", "item_id").agg(pl.len().cast(pl.Int64).alias("ui_n_events"))

    out = (
        out.join(item_cat, on="item_id", how="left")
        .join(_user_features(hist, cutoff), on="user_id", how="left")
        .join(_item_features(hist, cutoff), on="item_id", how="left")
        .join(user_item, on=ID_COLUMNS, how="left")
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
        .with_columns(
            # A user without history has no share: null, not 0.
            (pl.col("ui_cat_count") / pl.col("u_n_events")).alias("ui_cat_share"),
            _days_before(cutoff, "_cat_last").alias("ui_days_since_cat"),
            (pl.col("category_id") == pl.col("_last_cat")).cast(pl.Int8).alias("ui_same_cat_last"),
        )
        .drop("_cat_last", "_last_cat", "category_id")
    )
    out = _cooccurrence_features(out, hist)

    for feature in selected_features:
        in_users = users is not None and feature in users.columns and feature != "user_id"
        in_items = feature in items.columns and feature != "item_id"
        if in_users and in_items:
            raise ValueError(f"selected feature {feature!r} is a column of both users and items; rename one")
        if not (in_users or in_items):
            raise ValueError(f"selected feature {feature!r} is neither a users nor an items column")
        key, source = ("user_id", users) if in_users else ("item_id", items)
        out = out.join(_encode_categorical(source, key, feature), on=key, how="left")

    if target is not None:
        out = out.join(_labels(target, label_mode), on=ID_COLUMNS, how="left").with_columns(pl.col(LABEL).fill_null(0))
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
