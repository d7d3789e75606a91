"""The popularity fallback: a list for every evaluated user, as RecBole gives one to every test user.

API::

    popular_items(history)                         -> item_id, score    (most interactions first)
    popularity_fallback(users, history, k)         -> user_id, item_id, score, rank
    complete_with_popularity(recs, users, history, k=None)
                                                   -> recs plus a fallback list for every user of
                                                      ``users`` that ``recs`` has no row for

Popularity is the number of history interactions of an item (train + valid for the test fold),
ties broken by item_id so the list is deterministic. A user's own history items are left out of
their fallback list (as ``exclude_seen`` does for every stage); a user without history — the case
the fallback exists for — therefore gets the plain top-K. ``score`` is the interaction count and
``rank`` starts at 1; only ``rank`` matters to the metrics.
"""

from __future__ import annotations

import polars as pl

from recsys.schema import RECOMMENDATION_SCHEMA

DEFAULT_K = 100


def popular_items(history: pl.DataFrame) -> pl.DataFrame:
    """(item_id, score) by history interaction count, most popular first, ties by item_id."""
    return (
        history.group_by(pl.col("item_id").cast(pl.Int64))
        .agg(pl.len().cast(pl.Float64).alias("score"))
        .sort(["score", "item_id"], descending=[True, False])
    )


def _empty() -> pl.DataFrame:
    return pl.DataFrame(schema=RECOMMENDATION_SCHEMA)


def popularity_fallback(users: pl.Series | pl.DataFrame, history: pl.DataFrame, k: int = DEFAULT_K) -> pl.DataFrame:
    """Top-``k`` popular items for each of ``users``, each user's own history items left out."""
    who = (users.to_frame() if isinstance(users, pl.Series) else users).select(pl.col("user_id").cast(pl.Int64)).unique()
    if who.is_empty() or history.is_empty() or k <= 0:
        return _empty()
    seen = history.select(pl.col("user_id").cast(pl.Int64), pl.col("item_id").cast(pl.Int64)).unique().join(who, on="user_id", how="semi")
    # enough of the head that k items survive after dropping the most-seen user's own items
    longest = seen.group_by("user_id").len()["len"].max() if seen.height else 0
    head = popular_items(history).head(k + (longest or 0))
    return (
        who.join(head, how="cross")
        .join(seen, on=["user_id", "item_id"], how="anti")
        .sort(["user_id", "score", "item_id"], descending=[False, True, False])
        .with_columns(pl.int_range(1, pl.len() + 1).over("user_id").cast(pl.Int32).alias("rank"))
        .filter(pl.col("rank") <= k)
        .select([pl.col(c).cast(t) for c, t in RECOMMENDATION_SCHEMA.items()])
    )


def complete_with_popularity(
    recs: pl.DataFrame, users: pl.Series | pl.DataFrame, history: pl.DataFrame, k: int | None = None
) -> pl.DataFrame:
    """``recs`` plus the popularity fallback for every user of ``users`` with no row in ``recs``.

    ``k`` defaults to the longest list in ``recs`` (so fallback lists are as long as the stage's),
    or DEFAULT_K when ``recs`` is empty. Users of ``recs`` are kept unchanged; the result is sorted
    by (user_id, rank)."""
    who = (users.to_frame() if isinstance(users, pl.Series) else users).select(pl.col("user_id").cast(pl.Int64)).unique()
    recs = recs.select([pl.col(c).cast(t) for c, t in RECOMMENDATION_SCHEMA.items()])
    missing = who.join(recs.select("user_id").unique(), on="user_id", how="anti")
    if missing.is_empty():
        return recs
    if k is None:
        k = int(recs["rank"].max()) if recs.height else DEFAULT_K
    return pl.concat([recs, popularity_fallback(missing, history, k)], how="vertical").sort(["user_id", "rank"])
