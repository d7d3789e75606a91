"""Loading the shared inputs of downstream assets from the warehouse."""

import polars as pl

from recsys.schema import INTERACTION_SCHEMA, conform
from recsys.split import Split
from resources.warehouse import Warehouse

DUCKDB_POOL = "duckdb_writer"
GPU_POOL = "gpu"
FOLDS = ("valid", "test")


def load_split(warehouse: Warehouse) -> Split:
    parts = {
        fold: conform(warehouse.query_file("staging/split_fold", {"fold": fold}), INTERACTION_SCHEMA) for fold in ("train", "valid", "test")
    }
    params = warehouse.query("SELECT CAST(params AS VARCHAR) AS p FROM staging.split_params").row(0)[0]
    import json

    return Split(parts["train"], parts["valid"], parts["test"], json.loads(params))


def load_items(warehouse: Warehouse) -> pl.DataFrame:
    return warehouse.table("raw.items")


def load_users(warehouse: Warehouse) -> pl.DataFrame:
    return warehouse.table("raw.users")


def with_fold(recs: pl.DataFrame, fold: str) -> pl.DataFrame:
    """A recommendation frame as rows of a candidates.<stage> table."""
    return recs.with_columns(pl.lit(fold).alias("fold")).select("fold", "user_id", "item_id", "score", "rank")


def warm_truth(target: pl.DataFrame, history: pl.DataFrame) -> pl.DataFrame:
    """Truth (user_id, item_id) of a fold: every target interaction of its warm users."""
    from recsys.split import relevant

    return relevant(target).join(target_users(target, history).to_frame(), on="user_id", how="semi")


def target_users(target: pl.DataFrame, history: pl.DataFrame) -> pl.Series:
    """Users evaluated in a fold: those with target events and some history (warm users)."""
    return target.select("user_id").unique().join(history.select("user_id").unique(), on="user_id", how="semi").sort("user_id")["user_id"]


EVAL_COLUMNS = [
    "run_id",
    "evaluated_at",
    "dataset",
    "protocol",
    "fold",
    "stage",
    "cohort",
    "metric",
    "k",
    "value",
    "ci_low",
    "ci_high",
    "n_users",
]


def eval_rows(
    metrics: pl.DataFrame, *, run_id: str, dataset: str, protocol: str, fold: str, stage: str, cohort: str = "all"
) -> pl.DataFrame:
    """Long eval.metrics rows from (metric, k, value, n_users[, ci_low, ci_high][, cohort]) rows."""
    from resources.warehouse import utcnow

    frame = metrics
    for column in ("ci_low", "ci_high"):
        if column not in frame.columns:
            frame = frame.with_columns(pl.lit(None, pl.Float64).alias(column))
    if "cohort" not in frame.columns:
        frame = frame.with_columns(pl.lit(cohort).alias("cohort"))
    return frame.select(
        pl.lit(run_id).alias("run_id"),
        pl.lit(utcnow()).alias("evaluated_at"),
        pl.lit(dataset).alias("dataset"),
        pl.lit(protocol).alias("protocol"),
        pl.lit(fold).alias("fold"),
        pl.lit(stage).alias("stage"),
        pl.col("cohort").cast(pl.Utf8),
        pl.col("metric").cast(pl.Utf8),
        pl.col("k").cast(pl.Int32),
        pl.col("value").cast(pl.Float64),
        pl.col("ci_low").cast(pl.Float64),
        pl.col("ci_high").cast(pl.Float64),
        pl.col("n_users").cast(pl.Int64),
    )


def load_candidates(warehouse: Warehouse, stage: str, fold: str) -> pl.DataFrame:
    return warehouse.query(
        f"SELECT user_id, item_id, score, rank FROM candidates.{stage} WHERE fold = $fold ORDER BY user_id, rank",
        {"fold": fold},
    ).with_columns(pl.col("rank").cast(pl.Int32))
