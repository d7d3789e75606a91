"""Ranker dataset: one row per (user, candidate item) with features computed from history only.

API::

    params, user_cutoffs = history_params(cutoff, label_mode="binary", with_valid=False, labelled=True)
    # sql/features/ranker_history.sql (resources/ranker_frames.py runs it on the engine) gives the
    # history features and labels of every pool pair; per block of users:
    parts = RankerParts.of(pool, users, items, selected_features, raw_scores=False)
    frame = parts.finish(pool_block, history_block, labelled=True)
    feature_columns(frame) -> list[str]          # every column except user_id, item_id, label
    categorical_columns(frame) -> list[str]      # the ``cat__*`` integer-coded columns
    holdout_users(user_ids, fraction, seed) -> np.ndarray[bool]   # seeded hash split
    grouped_ndcg_at_k(groups, labels, scores, k) -> float          # mean NDCG@k over groups

``resources.ranker_frames.build_ranker_frame(pool, history, items, users, ...)`` builds the whole frame
from in-memory frames (tests, notebooks); the ``ranker_dataset`` asset builds it where the split lies.

Inputs. ``pool``: user_id, item_id, ``{c}__score`` (Float64), ``{c}__rank`` (Int32), null where channel
``c`` did not retrieve the item, and ``n_channels``. History: the split's history folds (train, or
train + valid for the test fold), strictly before ``cutoff`` when one is given. Labels: the label fold
(valid), which only ever produces ``label``. ``items``: item_id, category_id, attributes; ``users``:
user_id, attributes.

Time (sql/features/ranker_history.sql's header has the whole definition). ``cutoff`` is the first
instant of the label window: history rows at or after it are ignored, and every recency/window feature
is measured back from it. When ``cutoff`` is None (or ``"global"``) it is history's max ts.

Per-user cut-offs (leave-last-out; ``cutoff_mode_for(protocol)`` picks the mode). ``cutoff="per_user"``:
each user u has their own cut-off c_u, the ts of u's last history event (valid fold: last train
event; test fold: last train + valid event); a frame ``user_id, cutoff`` gives them explicitly (a
user absent from it, or without history, is measured at history's max ts). For a row (u, i) every
time-relative feature is then as of c_u: user features from u's events with ts <= c_u, measured
back from c_u; item features (i_pop … i_conv_rate) count only events of any user with ts <= c_u;
``ui_days_since_cat`` counts back from c_u; the co-occurrence features count only users whose first
events on both items are at or before c_u (each user's items still capped to their last 200 at
history's end: see docs/evaluation.md, "Per-user cut-offs"). The statement answers these as-of
questions with running sums over events and questions stacked in one sorted table, no loop over rows.

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
- ``label`` Int32 when labelled (the valid fold; ``target`` in ``build_ranker_frame``). ``binary``: 1 if
  (user, item) occurs in the label fold.
  ``graded``: the strongest event of the pair — view/click 1, fav 2, cart 3, buy 4, and for
  ``rate`` 1 for ratings <= 3, 2 for 4, 3 for 5 — so LambdaRank's 2^label - 1 gain favours them.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl

from recsys.schema import with_event_position

ID_COLUMNS = ("user_id", "item_id")
LABEL = "label"
CAT_PREFIX = "cat__"
# Heavy users dominate co-occurrence counts and cost; only their most recent items count.
COOC_MAX_ITEMS_PER_USER = 200
CUTOFF_MODES = ("global", "per_user")


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


HISTORY_COLUMNS: dict[str, pl.DataType] = {  # sql/features/ranker_history.sql's features, in frame order
    "u_n_events": pl.Int64,
    "u_n_items": pl.Int64,
    "u_days_active": pl.Int64,
    "u_n_events_7d": pl.Int64,
    "u_mean_rating": pl.Float64,
    "u_recency_days": pl.Float64,
    "u_tenure_days": pl.Float64,
    "i_pop": pl.Int64,
    "i_n_users": pl.Int64,
    "i_pop_7d": pl.Int64,
    "i_pop_30d": pl.Int64,
    "i_mean_rating": pl.Float64,
    "i_n_ratings": pl.Int64,
    "i_conv_rate": pl.Float64,
    "i_trend": pl.Float64,
    "i_age_days": pl.Float64,
    "ui_n_events": pl.Int64,
    "ui_cat_count": pl.Int64,
    "ui_cat_share": pl.Float64,
    "ui_days_since_cat": pl.Float64,
    "ui_same_cat_last": pl.Int8,
    "ui_cooc_last1": pl.Float64,
    "ui_cooc_last3": pl.Float64,
    "ui_cos_last3": pl.Float64,
}
LABEL_MODES = ("binary", "graded")
NO_CUTOFF_US = 2**62  # the statement's "no cut"
# The input tables the statement reads beside staging.split, and their schemas
PAIRS_TABLE, CATEGORIES_TABLE, USER_CUTOFFS_TABLE = (
    "features.ranker_pairs",
    "features.ranker_item_categories",
    "features.ranker_user_cutoffs",
)
USER_CUTOFFS_SCHEMA = {"user_id": pl.Int64, "cutoff_us": pl.Int64}


def history_params(
    cutoff=None, *, label_mode: str = "binary", with_valid: bool = False, labelled: bool = True
) -> tuple[dict, pl.DataFrame]:
    """(sql/features/ranker_history.sql's parameters, its ``features.ranker_user_cutoffs`` frame) for a
    ``cutoff`` (module docstring: None, ``"global"``, ``"per_user"``, a datetime or date, or a
    ``user_id, cutoff`` frame). ``with_valid``: the history is train + valid (the test fold's);
    ``labelled``: labels come from the valid fold (else every label is 0 and the caller drops it)."""
    if label_mode not in LABEL_MODES:
        raise ValueError(f"label_mode must be 'binary' or 'graded', got {label_mode!r}")
    per_user, cutoff_us = False, NO_CUTOFF_US
    user_cutoffs = pl.DataFrame(schema=USER_CUTOFFS_SCHEMA)
    if isinstance(cutoff, str):
        if cutoff not in CUTOFF_MODES:
            raise ValueError(f"cutoff must be one of {CUTOFF_MODES}, a datetime or a user_id/cutoff frame; got {cutoff!r}")
        per_user = cutoff == "per_user"
    elif isinstance(cutoff, pl.DataFrame):
        if not {"user_id", "cutoff"} <= set(cutoff.columns):
            raise ValueError(f"a per-user cutoff frame needs columns user_id, cutoff; got {cutoff.columns}")
        if cutoff["user_id"].is_duplicated().any():
            raise ValueError("the per-user cutoff frame has more than one row for some user_id")
        user_cutoffs = cutoff.select(
            pl.col("user_id").cast(pl.Int64), pl.col("cutoff").cast(pl.Datetime("us")).dt.epoch("us").alias("cutoff_us")
        )
    elif cutoff is not None:
        if isinstance(cutoff, dt.date) and not isinstance(cutoff, dt.datetime):
            cutoff = dt.datetime.combine(cutoff, dt.time())  # a label-window start date means its midnight
        cutoff_us = int(pl.Series([cutoff], dtype=pl.Datetime("us")).dt.epoch("us")[0])
    params = {
        "with_valid": with_valid,
        "cutoff_us": cutoff_us,
        "per_user": per_user,
        "max_items": COOC_MAX_ITEMS_PER_USER,
        "label_fold": "valid" if labelled else "",
        "graded": label_mode == "graded",
    }
    return params, user_cutoffs


def item_categories(items: pl.DataFrame) -> pl.DataFrame:
    """The statement's ``features.ranker_item_categories``: one row per item (the first), Int64 ids."""
    missing = [c for c in ("item_id", "category_id") if c not in items.columns]
    if missing:
        raise ValueError(f"items frame lacks columns {missing}")
    return items.select(pl.col("item_id").cast(pl.Int64), pl.col("category_id").cast(pl.Int64)).unique("item_id", keep="first")


def pool_pairs(pool: pl.DataFrame) -> pl.DataFrame:
    """The statement's ``features.ranker_pairs`` (user_id, item_id as Int64); a repeated pair is an error."""
    missing = [c for c in ID_COLUMNS if c not in pool.columns]
    if missing:
        raise ValueError(f"pool frame lacks columns {missing}")
    pairs = pool.select(pl.col("user_id").cast(pl.Int64), pl.col("item_id").cast(pl.Int64))
    if pairs.is_duplicated().any():
        raise ValueError("pool has duplicate (user_id, item_id) rows; expected one row per pair")
    return pairs


class RankerParts:
    """What every block of one fold's frame shares: the pool's channels, the categorical codes and whether
    raw scores are kept; ``finish`` builds one block's frame from its pool rows and its history rows."""

    def __init__(self, channels: list[str], has_n_channels: bool, encodings: list, raw_scores: bool):
        self.channels, self.has_n_channels, self.encodings, self.raw_scores = channels, has_n_channels, encodings, raw_scores

    @classmethod
    def of(cls, pool: pl.DataFrame, users: pl.DataFrame | None, items: pl.DataFrame, selected_features=(), raw_scores=False):
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
        return cls(channel_names(pool), "n_channels" in pool.columns, encodings, raw_scores)

    def finish(self, pool: pl.DataFrame, history: pl.DataFrame, labelled: bool) -> pl.DataFrame:
        """The frame of ``pool``'s rows (one block of users): channel features, then ``history``'s features
        (the statement's rows for at least these pairs) in HISTORY_COLUMNS order, the categorical codes
        and, when ``labelled``, the label; sorted by user_id, item_id. A pool pair without a history row
        is an error (the statement answers every pair)."""
        out = _channel_features(pool, self.channels, self.raw_scores)
        if self.has_n_channels:
            out = out.with_columns(pool["n_channels"].cast(pl.Int32))
        else:
            out = out.with_columns(pl.sum_horizontal([pl.col(f"{c}__hit") for c in self.channels]).cast(pl.Int32).alias("n_channels"))
        if out.select(pl.struct(ID_COLUMNS).is_duplicated().any()).item():
            raise ValueError("pool has duplicate (user_id, item_id) rows; expected one row per pair")
        hist = history.select(
            pl.col("user_id").cast(pl.Int64),
            pl.col("item_id").cast(pl.Int64),
            *[pl.col(c).cast(t) for c, t in HISTORY_COLUMNS.items()],
            pl.col(LABEL).cast(pl.Int32),
            pl.lit(True).alias("_answered"),
        )
        out = out.join(hist, on=list(ID_COLUMNS), how="left")
        unanswered = out.filter(pl.col("_answered").is_null())
        if unanswered.height:
            raise ValueError(f"ranker history features: no row for {unanswered.height} pool pairs, e.g. {unanswered.row(0)[:2]}")
        label = out[LABEL]
        out = out.drop("_answered", LABEL)
        for key, codes in self.encodings:
            out = out.join(codes, on=key, how="left")
        if labelled:
            out = out.with_columns(label)
        return out.sort(ID_COLUMNS)


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


def _splitmix64(x: np.ndarray) -> np.ndarray:
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _user_unit(user_ids, seed: int) -> np.ndarray:
    """A seeded hash of each user_id, uniform in [0, 1): stable across runs and folds, free of id order."""
    ids = np.asarray(user_ids.to_numpy() if isinstance(user_ids, pl.Series) else user_ids).astype(np.int64)
    with np.errstate(over="ignore"):
        h = _splitmix64(ids.view(np.uint64) ^ _splitmix64(np.array([seed], dtype=np.int64).view(np.uint64)))
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def holdout_users(user_ids, fraction: float, seed: int = 0) -> np.ndarray:
    """True for the users in the held-out slice: a seeded hash of user_id, stable across runs and folds."""
    return _user_unit(user_ids, seed) < fraction


def user_slices(user_ids, fraction: float, seed: int = 0) -> np.ndarray:
    """Each user's slice of the same hash cut every ``fraction``: slice 0 is ``holdout_users``' slice, and
    the ceil(1 / fraction) slices partition the users (int64, 0 .. ceil(1 / fraction) - 1)."""
    n = math.ceil(1.0 / fraction - 1e-9)
    u = _user_unit(user_ids, seed)
    cut = np.minimum(np.floor(u / fraction), n - 1).astype(np.int64)
    return np.where(u < fraction, 0, np.maximum(cut, 1))  # slice 0 exactly as holdout_users, whatever the rounding


def per_group_ndcg_at_k(groups: np.ndarray, labels: np.ndarray, scores: np.ndarray, k: int = 10) -> np.ndarray:
    """NDCG@k (gain 2^label - 1, as LightGBM) of each group with a positive label, in sorted group order.

    Ties in ``scores`` keep input order. Groups without a positive are skipped (their NDCG is undefined).
    """
    groups = np.asarray(groups)
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if len(groups) == 0:
        return np.empty(0, dtype=np.float64)
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
    return actual[has_pos] / ideal[has_pos]


def grouped_ndcg_at_k(groups: np.ndarray, labels: np.ndarray, scores: np.ndarray, k: int = 10) -> float:
    """Mean NDCG@k (``per_group_ndcg_at_k``) over groups with a positive label; NaN when there is none."""
    per_group = per_group_ndcg_at_k(groups, labels, scores, k)
    return float(per_group.mean()) if len(per_group) else float("nan")
