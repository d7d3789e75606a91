"""OutRank's input rows, shaped and labelled like the rankers' rows, and the features they carry.

API::

    start = label_window_start(train, window_days=None, window_frac=0.1)  # the label window's first instant
    start = label_window_start_at(n, ts_at, window_days=None)            # the same from where the fold lies
    params = outrank_row_params(start, negatives_per_positive=10, seed=0, max_rows=None)
    raw = <sql/features/outrank_rows.sql with params, on the engine>   # features.outrank_item_categories = item_categories(items)
    rows = finish_outrank_rows(raw, users, items)        # ordered, ids *_raw, attributes joined
    features = bucketize(rows)                           # every column a small categorical
    mi_list = select_features(ranking, redundant_pairs)  # MI-only selection (above noise, de-duplicated)
    three_mr_list = select_features_3mr(three_mr_ranking)  # 3MR's selection (ranked before every control)
    users, names = with_selected_attributes(users_catalog, "user_id", selected)

The rankers learn "does (user, item) occur in the next window" over candidate pools of unseen
items; OutRank must rank features against that same label, from the train fold only. So the last
window of train is held out as a label window (``label_window_start``), and rows are, per user with
history before it and events in it, the items of the window the user had not seen before
(label 1) plus popularity-sampled items the user had not seen (label 0). Every feature is measured
as of the window's start from the events before it (docs/outrank.md, "OutRank's input"). The rows
and their behavioural features are one SQL statement, sql/features/outrank_rows.sql, run where the
train fold lies (DuckDB, or Spark under RECDAG_ENGINE=spark); its popularity sampler is a per-key
hash, so both engines draw the same negatives. Numeric attributes with many values are then
quantile-bucketed (age, release year, ...), zip-like codes keep their first character, and
multi-valued genre strings keep their first genre, so every feature is a small categorical.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import polars as pl

from recsys.outrank.controls import CONTROL_PREFIX

RAW_ID_SUFFIX = "_raw"  # ids are kept raw on purpose: OutRank must show they are noise once corrected
NO_CAP = 2**62  # the statement's "no row budget"


def label_window_start(
    train: pl.DataFrame,
    window_days: float | None = None,
    window_frac: float = 0.1,
    end: dt.datetime | None = None,
    min_history_frac: float = 0.5,
) -> dt.datetime:
    """First instant of OutRank's label window: the last ``window_days`` before ``end`` (default:
    train's last event), or without ``window_days`` the last ``window_frac`` of train's events (a
    quantile cut, as ``temporal_split`` cuts). Never earlier than the ``min_history_frac`` quantile,
    so at least that share of train stays history. Only ``train`` is read."""
    ts = train["ts"].sort()
    return label_window_start_at(ts.len(), lambda pos: ts[pos], window_days, window_frac, end, min_history_frac)


def label_window_start_at(
    n: int,
    ts_at: Callable[[int], dt.datetime],
    window_days: float | None = None,
    window_frac: float = 0.1,
    end: dt.datetime | None = None,
    min_history_frac: float = 0.5,
) -> dt.datetime:
    """``label_window_start`` from train's size ``n`` and ``ts_at(pos)``, the timestamp at 0-based
    position ``pos`` of train's timestamps in ascending order (a query where the fold lies:
    sql/features/train_ts_at.sql). At most three positions are asked for."""
    if n < 2:
        raise ValueError("label_window_start: train needs at least two events")
    if not 0.0 < window_frac < 1.0 or not 0.0 < min_history_frac < 1.0:
        raise ValueError(f"label_window_start: need 0 < window_frac, min_history_frac < 1; got {window_frac}, {min_history_frac}")
    floor = ts_at(min(n - 1, int(round(n * min_history_frac))))
    if window_days:
        start = (end or ts_at(n - 1)) - dt.timedelta(days=window_days)
    else:
        start = ts_at(min(n - 1, int(round(n * (1.0 - window_frac)))))
    return max(start, floor)


def outrank_row_params(
    window_start: dt.datetime, negatives_per_positive: int = 10, seed: int = 0, max_rows: int | None = None, oversample: float = 3.0
) -> dict:
    """The parameters of sql/features/outrank_rows.sql (OutRank's input rows, one statement for both
    engines): the label window's start, the negatives per positive, the oversampling of popularity draws
    (per wanted negative for a user who has taken nothing, over the share of draws that land; more for a
    user who has taken much), the seed and the row budget (None: no cap)."""
    if negatives_per_positive < 0 or oversample < 1.0:
        raise ValueError(f"outrank rows: need negatives_per_positive >= 0, oversample >= 1; got {negatives_per_positive}, {oversample}")
    if max_rows is not None and max_rows < 1:
        raise ValueError(f"outrank rows: max_rows must be positive or None; got {max_rows}")
    return {
        "start": window_start,
        "negatives": int(negatives_per_positive),
        "oversample": float(oversample),
        "seed": int(seed),
        "max_rows": NO_CAP if max_rows is None else int(max_rows),
    }


def item_categories(items: pl.DataFrame) -> pl.DataFrame:
    """The statement's features.outrank_item_categories: item_id, category_id (null for a catalogue without categories)."""
    category = pl.col("category_id") if "category_id" in items.columns else pl.lit(None, pl.Int64).alias("category_id")
    return items.select(pl.col("item_id").cast(pl.Int64), category).unique("item_id", keep="first", maintain_order=True)


def finish_outrank_rows(raw: pl.DataFrame, users: pl.DataFrame, items: pl.DataFrame) -> pl.DataFrame:
    """OutRank's input from sql/features/outrank_rows.sql's rows: users in the order of their first
    positive (ts, seq), each user's positives first (in the order of their first window event) then its
    negatives (in draw order); ids renamed ``*_raw``; the users' and items' attributes (not ids or
    title) joined, as the rankers can read them; ``category_id`` only when the items have one.

    Columns: label Int32, user_id_raw, item_id_raw, category_id, ctx_hour and ctx_weekday (of the user's
    last history event), beh_user_activity (log2 bucket of the user's history events),
    beh_item_popularity (log2 bucket of the item's history events), beh_user_category_affinity (tenths
    of the user's history in the item's category; -1 without a category), beh_recency (log2 bucket of
    the seconds from the user's last history event to the window start), then the attributes."""
    behaviour = ["ctx_hour", "ctx_weekday", "beh_user_activity", "beh_item_popularity", "beh_user_category_affinity", "beh_recency"]
    has_category = "category_id" in items.columns
    ordered = raw.sort(["u_ts", "u_seq", "user_id", "part", "ord"])  # user_id only breaks a tie of two first positives
    out = ordered.select(
        pl.col("label").cast(pl.Int32),
        pl.col("user_id").alias("user_id_raw"),
        pl.col("item_id").alias("item_id_raw"),
        *([pl.col("category_id").cast(items.schema["category_id"])] if has_category else []),
        *[pl.col(c).cast(pl.Int32) for c in behaviour],
        pl.col("user_id").cast(users.schema["user_id"]),
        pl.col("item_id").cast(items.schema["item_id"]),
    )
    user_attrs = users.select([c for c in users.columns if c not in out.columns or c == "user_id"])
    item_attrs = items.select([c for c in items.columns if c == "item_id" or (c != "title" and c not in out.columns)])
    out = out.join(user_attrs, on="user_id", how="left", maintain_order="left").join(
        item_attrs, on="item_id", how="left", maintain_order="left"
    )
    return out.drop("user_id", "item_id")


def bucketize(frame: pl.DataFrame, label: str = "label", max_numeric_values: int = 32, n_buckets: int = 10) -> pl.DataFrame:
    """Return ``frame`` with every non-label column as a categorical of modest cardinality."""
    out = []
    for name in frame.columns:
        col = frame[name]
        if name == label or name.endswith(RAW_ID_SUFFIX):
            out.append(col)
        elif "zip" in name:
            out.append(col.cast(pl.Utf8).str.slice(0, 1).alias(f"{name}_prefix"))
        elif col.dtype == pl.Utf8 and col.str.contains(r"[|]").any():
            out.append(col.str.split("|").list.first().alias(f"{name}_first"))
        elif col.dtype.is_numeric() and col.n_unique() > max_numeric_values:
            ranks = col.cast(pl.Float64).rank("dense")
            out.append(((ranks - 1) * n_buckets // ranks.max()).cast(pl.Int32).alias(f"{name}_bucket"))
        else:
            out.append(col)
    return pl.DataFrame(out)


def select_features(ranking: pl.DataFrame, redundant: pl.DataFrame) -> list[str]:
    """Features above noise, not leaking, not constant, not raw ids; greedily de-duplicated.

    Walks the ranking best first and skips a feature that is redundant (a row of ``redundant``:
    feature_a, feature_b) with one already chosen, so of a near-duplicate pair the better one stays.
    """
    eligible = (
        ranking.filter(
            pl.col("above_noise")
            & ~pl.col("leakage").fill_null(False)
            & ~pl.col("is_constant").fill_null(False)
            & ~pl.col("feature").str.ends_with(RAW_ID_SUFFIX)
        )
        .sort("rank")["feature"]
        .to_list()
    )
    partners: dict[str, set[str]] = {}
    for a, b in redundant.select("feature_a", "feature_b").iter_rows():
        partners.setdefault(a, set()).add(b)
        partners.setdefault(b, set()).add(a)
    chosen: list[str] = []
    for feature in eligible:
        if not partners.get(feature, set()) & set(chosen):
            chosen.append(feature)
    return chosen


def select_features_3mr(three_mr_ranking: pl.DataFrame, quality: pl.DataFrame | None = None) -> list[str]:
    """3MR's selection: the features 3MR picks before its first control (its above-noise rule: only
    the rank counts), in 3MR's order, without leaking or constant features (``quality``: feature,
    leakage, is_constant) and raw ids. Redundancy is 3MR's own penalty: a near-copy of a picked
    feature loses its relevance to the median redundancy and falls behind the controls."""
    ranking = three_mr_ranking
    if "above_noise" not in ranking.columns:
        controls = ranking.filter(pl.col("feature").str.starts_with(CONTROL_PREFIX))
        first_control = controls["rank"].min() if controls.height else None
        above = pl.lit(True) if first_control is None else pl.col("rank") < first_control
        ranking = ranking.with_columns(above.alias("above_noise"))
    if quality is not None:
        ranking = ranking.join(quality.select("feature", "leakage", "is_constant"), on="feature", how="left")
    keep = pl.col("above_noise") & ~pl.col("feature").str.starts_with(CONTROL_PREFIX) & ~pl.col("feature").str.ends_with(RAW_ID_SUFFIX)
    for flag in ("leakage", "is_constant"):
        if flag in ranking.columns:
            keep = keep & ~pl.col(flag).fill_null(False)
    return ranking.filter(keep).sort("rank")["feature"].to_list()


def with_selected_attributes(
    catalog: pl.DataFrame, key: str, selected: list[str], skip: tuple[str, ...] = ("title",)
) -> tuple[pl.DataFrame, list[str]]:
    """``catalog`` (users or items) plus the OutRank-selected features it can provide, derived the
    way event_features derived them (bucketize), and the names of those features.

    The rankers and PI2I must see the feature OutRank judged (e.g. ``zip_prefix``, ``genres_first``,
    ``year_bucket``), not the raw column it came from: a raw zip code has ~800 values and a genre
    combination ~200, which a tree model memorizes instead of generalizing.
    """
    attributes = catalog.drop([key, *[c for c in skip if c in catalog.columns]])
    derived = bucketize(attributes, label="__no_label__")
    names = [name for name in dict.fromkeys(selected) if name in derived.columns]  # one column per name
    extra = [name for name in names if name not in catalog.columns]
    return catalog.with_columns(derived.select(extra)) if extra else catalog, names
