"""Cohorts: who the metrics are averaged over.

API::

    cohorts(history, truth, items_pop, tail_frac=0.2, heavy_frac=0.1, cold_max_interactions=5)
      -> user_id, cohort        (cohort in all | long_tail_users | heavy_users | cold_items | no_history)
    cohort_truth(truth, cohort_users, items_pop, cold_max_interactions=5)
      -> cohort, user_id, item_id
    evaluate_cohorts(recs, truth, cohort_users, items_pop, ks, metrics, per_user=False,
                     cold_max_interactions=5)
      -> cohort, metric, k, value, n_users    (per_user=True: cohort, user_id, metric, k, value)

``items_pop`` is recsys.metrics.beyond.item_popularity(history) (item_id, n_interactions, ...).
Activity = a user's number of history (train) interactions, 0 if none; quantiles are taken over
the users of ``truth`` that have history (the evaluated population minus no_history):
- all: every user in truth;
- long_tail_users: activity >= 1 and <= the tail_frac quantile (lower); ties at the threshold are
  all kept, so the cohort can be a little larger than tail_frac;
- heavy_users: activity >= the (1 − heavy_frac) quantile (higher), same tie rule;
- no_history: users of truth without any history interaction. Only the ``files`` protocol
  evaluates them (RecBole evaluates every test user); their lists are the popularity fallback
  (recsys.metrics.fallback). Under temporal / leave-last-out the truth holds warm users only and
  the cohort is empty (no rows);
- cold_items: defined on the truth side. A relevant item is cold when it has at most
  cold_max_interactions history interactions (absent items count 0). The cohort's users are those
  with at least one cold relevant item, and their truth is RESTRICTED to the cold items: recall@K
  is then the share of a user's cold relevant items found in the top K, ndcg's ideal list has
  min(#cold relevant, K) entries, and warm relevant items in the list count as misses (neither
  hits nor excluded), so the metric answers "does the model surface the cold items users want".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import polars as pl

from recsys.metrics.accuracy import DEFAULT_KS, DEFAULT_METRICS, per_user_metrics, summarize

COHORTS: tuple[str, ...] = ("all", "long_tail_users", "heavy_users", "cold_items", "no_history")
COLD_MAX_INTERACTIONS = 5


def _cold_truth(truth: pl.DataFrame, items_pop: pl.DataFrame, cold_max_interactions: int) -> pl.DataFrame:
    counts = items_pop.select("item_id", pl.col("n_interactions").cast(pl.Int64))
    return (
        truth.select("user_id", "item_id")
        .join(counts, on="item_id", how="left")
        .filter(pl.col("n_interactions").fill_null(0) <= cold_max_interactions)
        .select("user_id", "item_id")
    )


def cohorts(
    history: pl.DataFrame,
    truth: pl.DataFrame,
    items_pop: pl.DataFrame,
    tail_frac: float = 0.2,
    heavy_frac: float = 0.1,
    cold_max_interactions: int = COLD_MAX_INTERACTIONS,
) -> pl.DataFrame:
    """(user_id, cohort) membership rows; a user can be in several cohorts."""
    users = truth.select(pl.col("user_id").cast(pl.Int64)).unique()
    activity = users.join(history.group_by("user_id").agg(pl.len().cast(pl.Int64).alias("n")), on="user_id", how="left").with_columns(
        pl.col("n").fill_null(0)
    )
    active = activity.filter(pl.col("n") > 0)  # users without history form their own cohort
    low = active["n"].quantile(tail_frac, interpolation="lower") if active.height else 0
    high = active["n"].quantile(1.0 - heavy_frac, interpolation="higher") if active.height else 0
    cold_users = _cold_truth(truth, items_pop, cold_max_interactions).select("user_id").unique()
    parts = [
        users.with_columns(pl.lit("all").alias("cohort")),
        active.filter(pl.col("n") <= low).select("user_id", pl.lit("long_tail_users").alias("cohort")),
        active.filter(pl.col("n") >= high).select("user_id", pl.lit("heavy_users").alias("cohort")),
        cold_users.with_columns(pl.lit("cold_items").alias("cohort")),
        activity.filter(pl.col("n") == 0).select("user_id", pl.lit("no_history").alias("cohort")),
    ]
    order = pl.DataFrame({"cohort": list(COHORTS), "_o": list(range(len(COHORTS)))})
    return pl.concat(parts).join(order, on="cohort").sort(["_o", "user_id"]).drop("_o")


def cohort_truth(
    truth: pl.DataFrame,
    cohort_users: pl.DataFrame,
    items_pop: pl.DataFrame,
    cold_max_interactions: int = COLD_MAX_INTERACTIONS,
) -> pl.DataFrame:
    """Truth rows per cohort (cohort, user_id, item_id); cold_items keeps only cold relevant items."""
    truth = truth.select(pl.col("user_id").cast(pl.Int64), pl.col("item_id").cast(pl.Int64)).unique()
    user_cohorts = cohort_users.filter(pl.col("cohort") != "cold_items")
    cold = _cold_truth(truth, items_pop, cold_max_interactions).join(
        cohort_users.filter(pl.col("cohort") == "cold_items").select("user_id"), on="user_id", how="semi"
    )
    return pl.concat(
        [
            user_cohorts.join(truth, on="user_id").select("cohort", "user_id", "item_id"),
            cold.select(pl.lit("cold_items").alias("cohort"), "user_id", "item_id"),
        ]
    )


def evaluate_cohorts(
    recs: pl.DataFrame,
    truth: pl.DataFrame,
    cohort_users: pl.DataFrame,
    items_pop: pl.DataFrame,
    ks: Sequence[int] = DEFAULT_KS,
    metrics: Sequence[str] = DEFAULT_METRICS,
    per_user: bool = False,
    cold_max_interactions: int = COLD_MAX_INTERACTIONS,
    scorer: Callable[..., pl.DataFrame] = per_user_metrics,
) -> pl.DataFrame:
    """evaluate() per cohort, with a leading ``cohort`` column. ``scorer(recs, truth, ks, metrics)`` computes
    the per-user rows (default ``per_user_metrics``; the pipeline passes its engine's SQL twin,
    resources/engine.py ``SqlEngine.per_user_metrics``)."""
    truths = cohort_truth(truth, cohort_users, items_pop, cold_max_interactions)
    # user cohorts share each user's full truth: score users once, then attach memberships
    full = scorer(recs, truths.filter(pl.col("cohort") != "cold_items").drop("cohort").unique(), ks, metrics)
    by_user = cohort_users.filter(pl.col("cohort") != "cold_items").join(full, on="user_id")
    cold_truth = truths.filter(pl.col("cohort") == "cold_items").drop("cohort")
    parts = [by_user.select("cohort", "user_id", "metric", "k", "value")]
    if cold_truth.height:
        cold = scorer(recs, cold_truth, ks, metrics)
        parts.append(cold.select(pl.lit("cold_items").alias("cohort"), "user_id", "metric", "k", "value"))
    order = [
        pl.col("cohort").replace_strict(list(COHORTS), list(range(len(COHORTS)))),
        pl.col("metric").replace_strict(list(metrics), list(range(len(metrics)))),
        "k",
        "user_id",
    ]
    rows = pl.concat(parts).sort(order)
    return rows if per_user else summarize(rows, keys=["cohort"])
