"""OutRank's input rows, shaped and labelled like the rankers' rows, and the features they carry.

API::

    start = label_window_start(train, window_days=None, window_frac=0.1)  # the label window's first instant
    rows = outrank_rows(train, users, items, start, negatives_per_positive=10, seed=0, max_rows=None)
    features = bucketize(rows)                           # every column a small categorical
    mi_list = select_features(ranking, redundant_pairs)  # MI-only selection (above noise, de-duplicated)
    three_mr_list = select_features_3mr(three_mr_ranking)  # 3MR's selection (ranked before every control)
    users, names = with_selected_attributes(users_catalog, "user_id", selected)

The rankers learn "does (user, item) occur in the next window" over candidate pools of unseen
items; OutRank must rank features against that same label, from the train fold only. So the last
window of train is held out as a label window (``label_window_start``), and rows are, per user with
history before it and events in it, the items of the window the user had not seen before
(label 1) plus popularity-sampled items the user had not seen (label 0 unless they occur in the
window). Every feature is measured as of the window's start from the events before it
(docs/outrank.md, "OutRank's input"). Numeric attributes with many values are then
quantile-bucketed (age, release year, ...), zip-like codes keep their first character, and
multi-valued genre strings keep their first genre, so every feature is a small categorical.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from recsys.outrank.controls import CONTROL_PREFIX

RAW_ID_SUFFIX = "_raw"  # ids are kept raw on purpose: OutRank must show they are noise once corrected


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
    if train.height < 2:
        raise ValueError("label_window_start: train needs at least two events")
    if not 0.0 < window_frac < 1.0 or not 0.0 < min_history_frac < 1.0:
        raise ValueError(f"label_window_start: need 0 < window_frac, min_history_frac < 1; got {window_frac}, {min_history_frac}")
    ts = train["ts"].sort()
    n = ts.len()
    floor = ts[min(n - 1, int(round(n * min_history_frac)))]
    if window_days:
        start = (end or ts[-1]) - dt.timedelta(days=window_days)
    else:
        start = ts[min(n - 1, int(round(n * (1.0 - window_frac))))]
    return max(start, floor)


def _event_order(frame: pl.DataFrame) -> pl.DataFrame:
    keys = ["ts", "seq"] if "seq" in frame.columns else ["ts"]
    return frame.sort(keys, maintain_order=True)


def _sample_negatives(
    before: pl.DataFrame, positives: pl.DataFrame, seen: pl.DataFrame, negatives_per_positive: int, seed: int, rounds: int = 8
) -> pl.DataFrame:
    """user_id, item_id: per user, up to negatives_per_positive × (its positives) distinct items
    drawn by popularity before the window, none seen by the user nor in its positives (draws that
    hit one are redrawn, for up to ``rounds`` rounds). Items are indexed by first appearance in the
    event order and users drawn in ``positives``' order, so the draw does not depend on how ids are
    numbered."""
    empty = positives.select("user_id", "item_id").head(0)
    item_counts = _event_order(before).group_by("item_id", maintain_order=True).agg(pl.len().alias("n"))
    item_ids = item_counts["item_id"].to_numpy()
    p = item_counts["n"].to_numpy().astype(np.float64)
    need = positives.group_by("user_id", maintain_order=True).agg((pl.len() * negatives_per_positive).alias("k"))
    if need.is_empty() or item_ids.size == 0 or negatives_per_positive <= 0:
        return empty
    excluded = pl.concat([seen, positives.select("user_id", "item_id")]).unique()
    rng = np.random.default_rng(seed)
    kept = [empty]
    n_kept = need.select("user_id", pl.lit(0, pl.Int64).alias("n"))
    for _ in range(rounds):
        short = need.join(n_kept, on="user_id", maintain_order="left").with_columns((pl.col("k") - pl.col("n")).alias("short"))
        short = short.filter(pl.col("short") > 0)
        if short.is_empty():
            break
        draws = 2 * short["short"].to_numpy() + 10  # oversample: popular draws repeat and hit seen items
        picked = rng.choice(item_ids.size, size=int(draws.sum()), p=p / p.sum())
        drawn = pl.DataFrame(
            {"user_id": np.repeat(short["user_id"].to_numpy(), draws), "item_id": item_ids[picked]},
            schema={"user_id": positives["user_id"].dtype, "item_id": positives["item_id"].dtype},
        )
        drawn = (
            drawn.join(excluded, on=["user_id", "item_id"], how="anti", maintain_order="left")
            .unique(["user_id", "item_id"], keep="first", maintain_order=True)
            .join(short.select("user_id", "short"), on="user_id", maintain_order="left")
            .filter(pl.int_range(pl.len()).over("user_id") < pl.col("short"))
            .select("user_id", "item_id")
        )
        kept.append(drawn)
        excluded = pl.concat([excluded, drawn])
        n_kept = n_kept.join(drawn.group_by("user_id").len(), on="user_id", how="left", maintain_order="left").select(
            "user_id", (pl.col("n") + pl.col("len").fill_null(0)).alias("n")
        )
    # one user's negatives together, in the order they were drawn
    out = pl.concat(kept).with_row_index("_r")
    order = need.select("user_id").with_row_index("_u")
    return out.join(order, on="user_id", maintain_order="left").sort(["_u", "_r"]).select("user_id", "item_id")


def outrank_rows(
    train: pl.DataFrame,
    users: pl.DataFrame,
    items: pl.DataFrame,
    window_start: dt.datetime,
    negatives_per_positive: int = 10,
    seed: int = 0,
    max_rows: int | None = None,
) -> pl.DataFrame:
    """OutRank's input: rows shaped like the rankers' (user, candidate item), labelled like theirs.

    ``train``: the train fold's interactions (user_id, item_id, ts, [seq]); nothing later is read.
    History = train events before ``window_start``; label window = train events at or after it.
    Users: those with history and with events in the window. Rows per user: every item of the
    window the user had not interacted with in history (label 1), plus ``negatives_per_positive``
    × that many popularity-sampled items known in history that the user had not interacted with
    (label 0). Like the candidate pool, items already seen are never candidates. Every row's label
    is whether the pair occurs in the window. ``max_rows``: keep a seeded sample of whole users.

    Columns: label Int32, user_id_raw, item_id_raw, category_id (the items'
    column, so a selected category reaches the rankers), ctx_hour and ctx_weekday (of
    the user's last history event), beh_user_activity (log2 bucket of the user's history events),
    beh_item_popularity (log2 bucket of the item's history events), beh_user_category_affinity
    (tenths of the user's history in the item's category; -1 without a category), beh_recency
    (log2 bucket of the seconds from the user's last history event to the window start), then
    the users' and items' attributes (not ids or title), as the rankers can read them.
    """
    ordered = _event_order(train)
    before = ordered.filter(pl.col("ts") < window_start)
    window = ordered.filter(pl.col("ts") >= window_start)
    seen = before.select("user_id", "item_id").unique(maintain_order=True)
    positives = (
        window.join(before.select("user_id").unique(), on="user_id", how="semi", maintain_order="left")
        .select("user_id", "item_id")
        .unique(maintain_order=True)
        .join(seen, on=["user_id", "item_id"], how="anti", maintain_order="left")
        .join(before.select("item_id").unique(), on="item_id", how="semi", maintain_order="left")
    )
    negatives = _sample_negatives(before, positives, seen, negatives_per_positive, seed)
    pairs = pl.concat(
        [positives.with_columns(pl.lit(1, pl.Int32).alias("label")), negatives.with_columns(pl.lit(0, pl.Int32).alias("label"))]
    )
    # users in the order of their first window event, positives first within a user
    user_order = positives.select("user_id").unique(maintain_order=True).with_row_index("_u")
    pairs = pairs.join(user_order, on="user_id", how="left").with_row_index("_r").sort(["_u", "_r"]).drop("_r")
    if max_rows is not None and pairs.height > max_rows:
        sizes = pairs.group_by("_u", maintain_order=True).len()
        order = np.random.default_rng([seed, 1]).permutation(sizes.height)
        keep = sizes[order].filter(pl.col("len").cum_sum() <= max_rows)["_u"]
        pairs = pairs.filter(pl.col("_u").is_in(keep.implode()))
    pairs = pairs.drop("_u")

    category = items.select("item_id", pl.col("category_id")) if "category_id" in items.columns else None
    hist = before if category is None else before.join(category, on="item_id", how="left", maintain_order="left")
    per_user = hist.group_by("user_id").agg(
        pl.len().alias("_u_n"), pl.col("ts").last().alias("_u_last")
    )  # before is in event order: last() is the latest event
    per_item = hist.group_by("item_id").agg(pl.len().alias("_i_n"))
    rows = pairs.join(per_user, on="user_id", how="left", maintain_order="left").join(
        per_item, on="item_id", how="left", maintain_order="left"
    )
    if category is not None:
        per_user_cat = hist.filter(pl.col("category_id").is_not_null()).group_by("user_id", "category_id").agg(pl.len().alias("_uc_n"))
        rows = rows.join(category, on="item_id", how="left", maintain_order="left").join(
            per_user_cat, on=["user_id", "category_id"], how="left", maintain_order="left"
        )
        affinity = (
            pl.when(pl.col("category_id").is_null())
            .then(-1)
            .otherwise((10 * pl.col("_uc_n").fill_null(0) / pl.col("_u_n")).floor().clip(upper_bound=9))
        )
    else:
        affinity = pl.lit(-1)
    log2_bucket = lambda e: (1 + e.cast(pl.Float64)).log(2).floor().cast(pl.Int32)  # noqa: E731
    gap_s = (pl.lit(window_start) - pl.col("_u_last")).dt.total_seconds()
    out = rows.select(
        "label",
        pl.col("user_id").alias("user_id_raw"),
        pl.col("item_id").alias("item_id_raw"),
        *(["category_id"] if category is not None else []),
        pl.col("_u_last").dt.hour().cast(pl.Int32).alias("ctx_hour"),
        pl.col("_u_last").dt.weekday().cast(pl.Int32).alias("ctx_weekday"),
        log2_bucket(pl.col("_u_n")).alias("beh_user_activity"),
        log2_bucket(pl.col("_i_n").fill_null(0)).alias("beh_item_popularity"),
        affinity.cast(pl.Int32).alias("beh_user_category_affinity"),
        log2_bucket(gap_s).alias("beh_recency"),
        pl.col("user_id"),
        pl.col("item_id"),
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
