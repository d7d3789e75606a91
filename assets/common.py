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
        fold: conform(warehouse.query_file("staging/split_fold", {"fold": fold}), INTERACTION_SCHEMA)
        for fold in ("train", "valid", "test")
    }
    params = warehouse.query("SELECT CAST(params AS VARCHAR) AS p FROM staging.split_params").row(0)[0]
    import json

    return Split(parts["train"], parts["valid"], parts["test"], json.loads(params))


def load_items(warehouse: Warehouse) -> pl.DataFrame:
    return warehouse.table("raw.items")


def load_users(warehouse: Warehouse) -> pl.DataFrame:
    return warehouse.table("raw.users")


def target_users(target: pl.DataFrame, history: pl.DataFrame) -> pl.Series:
    """Users evaluated in a fold: those with target events and some history (warm users)."""
    return (
        target.select("user_id").unique().join(history.select("user_id").unique(), on="user_id", how="semi")
        .sort("user_id")["user_id"]
    )
