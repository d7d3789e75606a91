"""Full-ranking accuracy metrics, vectorized with polars joins and group-bys.

API::

    recs = exclude_seen(recs, history, k=100)     # drop items seen in history, re-rank 1..n
    ranked_positions(recs, max_k)                 # user_id, item_id, pos (1..n per user, <= max_k)
    evaluate(recs, truth, ks=(5, 10, 20, 50, 100),
             metrics=("hit_rate", "recall", "precision", "ndcg", "mrr", "map"),
             per_user=False)
      -> metric Utf8, k Int32, value Float64, n_users Int64        (mean over users)
      -> user_id Int64, metric, k, value                           (per_user=True)

``recs`` is a recommendation frame (user_id, item_id, score, rank): each user's top items over the
FULL catalogue (no sampled negatives). Only the order given by ``rank`` matters (ties in score are
already broken by rank); positions are re-numbered 1..n per user, so gaps in rank are harmless.
``truth`` is (user_id, item_id), one row per relevant item (duplicates are ignored).

The users evaluated are exactly the users of ``truth``: a user with no recommendations scores 0;
recommendations for users outside ``truth`` are ignored. With R = the user's relevant set,
pos = 1-based position, hits@K = |top-K ∩ R|:

- hit_rate@K  = 1 if hits@K > 0                       (ranx ``hit_rate@k``; ranx ``hits@k`` is the count)
- recall@K    = hits@K / |R|
- precision@K = hits@K / K                            (K, even when the list is shorter)
- ndcg@K      = Σ_{hit pos ≤ K} 1/log2(pos+1)  /  Σ_{i=1}^{min(|R|,K)} 1/log2(i+1)   (binary gains)
- mrr@K       = 1 / position of the first hit within K, else 0
- map@K       = Σ_{hit pos ≤ K} precision@pos / min(|R|, K)   (RecBole's convention; equals ranx
                ``map@k`` whenever |R| ≤ K, e.g. leave-last-out)
- map_trec@K  = Σ_{hit pos ≤ K} precision@pos / |R|   (trec_eval / ranx ``map@k`` exactly)

Duplicate (user_id, item_id) rows in ``recs`` are an error: a list cannot show an item twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

METRICS: tuple[str, ...] = ("hit_rate", "recall", "precision", "ndcg", "mrr", "map", "map_trec")
DEFAULT_METRICS: tuple[str, ...] = ("hit_rate", "recall", "precision", "ndcg", "mrr", "map")
DEFAULT_KS: tuple[int, ...] = (5, 10, 20, 50, 100)


def exclude_seen(recs: pl.DataFrame, history: pl.DataFrame, k: int | None = None) -> pl.DataFrame:
    """Remove (user, item) pairs present in history, renumber rank 1..n per user, keep rank <= k."""
    seen = history.select("user_id", "item_id").unique()
    kept = recs.join(seen, on=["user_id", "item_id"], how="anti")
    kept = kept.sort(["user_id", "rank"], maintain_order=True).with_columns(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("user_id").alias("rank")
    )
    return kept if k is None else kept.filter(pl.col("rank") <= k)


def _has_duplicate_pairs(recs: pl.DataFrame) -> bool:
    users, items = recs["user_id"], recs["item_id"]
    n_items = int(items.max()) + 1 if recs.height else 1
    if recs.height and users.min() >= 0 and items.min() >= 0 and int(users.max()) < (2**62) // n_items:
        # one int64 key per pair hashes far faster than a two-column struct
        return (users.cast(pl.Int64) * n_items + items.cast(pl.Int64)).n_unique() < recs.height
    return recs.select("user_id", "item_id").n_unique() < recs.height


def ranked_positions(recs: pl.DataFrame, max_k: int) -> pl.DataFrame:
    """(user_id, item_id, pos) with pos = 1..n following rank (ties: input order), cut to max_k."""
    missing = [c for c in ("user_id", "item_id", "rank") if c not in recs.columns]
    if missing:
        raise ValueError(f"recs lacks columns {missing}; expected user_id, item_id, score, rank")
    if _has_duplicate_pairs(recs):
        dup = recs.select("user_id", "item_id").is_duplicated()
        example = recs.filter(dup).head(1).to_dicts()[0]
        raise ValueError(f"recs repeat an item within a user's list, e.g. {example}")
    return (
        recs.select(pl.col("user_id").cast(pl.Int64), pl.col("item_id").cast(pl.Int64), pl.col("rank"))
        .sort(["user_id", "rank"], maintain_order=True)
        .with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int32).over("user_id").alias("pos"))
        .filter(pl.col("pos") <= max_k)
        .drop("rank")
    )


def _ideal_dcg(max_k: int) -> np.ndarray:
    """idcg[j] = Σ_{i=1}^{j} 1/log2(i+1), j = 0..max_k."""
    return np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, max_k + 2)))])


def per_user_metrics(
    recs: pl.DataFrame,
    truth: pl.DataFrame,
    ks: Sequence[int] = DEFAULT_KS,
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> pl.DataFrame:
    """One row per (user in truth, metric, k): user_id, metric, k, value."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; supported: {METRICS}")
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    max_k = ks[-1]
    truth = truth.select(pl.col("user_id").cast(pl.Int64), pl.col("item_id").cast(pl.Int64)).unique()
    n_rel = truth.group_by("user_id").agg(pl.len().cast(pl.Int64).alias("n_rel"))

    # one row per hit: its position, discount, and precision at that position (cumulative hits / pos)
    hits = (
        ranked_positions(recs, max_k)
        .join(truth, on=["user_id", "item_id"], how="inner")
        .sort(["user_id", "pos"])
        .with_columns(
            (1.0 / (pl.col("pos") + 1).cast(pl.Float64).log(2)).alias("disc"),
            (pl.int_range(1, pl.len() + 1).over("user_id") / pl.col("pos")).alias("prec_at_hit"),
        )
    )
    ks_frame = pl.DataFrame({"k": ks}, schema={"k": pl.Int32})
    at_k = (
        hits.join(ks_frame, how="cross")
        .filter(pl.col("pos") <= pl.col("k"))
        .group_by("user_id", "k")
        .agg(
            pl.len().cast(pl.Float64).alias("n_hits"),
            pl.col("disc").sum().alias("dcg"),
            pl.col("pos").min().alias("first_pos"),
            pl.col("prec_at_hit").sum().alias("ap_sum"),
        )
    )
    idcg = pl.Series("idcg_table", _ideal_dcg(max_k))
    frame = (
        n_rel.join(ks_frame, how="cross")
        .join(at_k, on=["user_id", "k"], how="left")
        .with_columns(pl.col("n_hits", "dcg", "ap_sum").fill_null(0.0))
        .with_columns(pl.min_horizontal("n_rel", pl.col("k").cast(pl.Int64)).alias("n_ideal"))
        .with_columns(pl.lit(idcg).gather(pl.col("n_ideal")).alias("idcg"))
    )
    exprs = {
        "hit_rate": (pl.col("n_hits") > 0).cast(pl.Float64),
        "recall": pl.col("n_hits") / pl.col("n_rel"),
        "precision": pl.col("n_hits") / pl.col("k"),
        "ndcg": pl.col("dcg") / pl.col("idcg"),
        "mrr": (1.0 / pl.col("first_pos").cast(pl.Float64)).fill_null(0.0),
        "map": pl.col("ap_sum") / pl.col("n_ideal"),
        "map_trec": pl.col("ap_sum") / pl.col("n_rel"),
    }
    wide = frame.select("user_id", "k", *[exprs[m].alias(m) for m in metrics]).sort(["k", "user_id"])
    # stacking one block per metric keeps (metric, k, user) order without sorting the long frame
    return pl.concat([wide.select("user_id", pl.lit(m).alias("metric"), "k", pl.col(m).cast(pl.Float64).alias("value")) for m in metrics])


def summarize(per_user: pl.DataFrame, keys: Sequence[str] = ()) -> pl.DataFrame:
    """Mean over users of per-user rows: (*keys, metric, k, value, n_users), order of appearance kept."""
    group = [*keys, "metric", "k"]
    return per_user.group_by(group, maintain_order=True).agg(
        pl.col("value").mean().alias("value"), pl.len().cast(pl.Int64).alias("n_users")
    )


def evaluate(
    recs: pl.DataFrame,
    truth: pl.DataFrame,
    ks: Sequence[int] = DEFAULT_KS,
    metrics: Sequence[str] = DEFAULT_METRICS,
    per_user: bool = False,
) -> pl.DataFrame:
    """Accuracy of ``recs`` against ``truth`` at each K (see module docstring for definitions)."""
    rows = per_user_metrics(recs, truth, ks, metrics)
    return rows if per_user else summarize(rows)
