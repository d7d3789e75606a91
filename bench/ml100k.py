"""ML-100K's RecBole atomic interactions file as recdag interactions, for the benches that read it directly."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from recsys.schema import INTERACTION_SCHEMA, conform


def load_interactions(path: Path) -> pl.DataFrame:
    """``<path>/ml-100k.inter`` conformed to INTERACTION_SCHEMA (ratings as ``rate`` events, seq = line order)."""
    raw = pl.read_csv(path / "ml-100k.inter", separator="\t")
    raw = raw.rename({c: c.split(":")[0] for c in raw.columns})
    ts = pl.from_epoch(pl.col("timestamp").cast(pl.Int64), time_unit="s").cast(pl.Datetime("us"))
    frame = raw.select(
        pl.col("user_id").cast(pl.Int64),
        pl.col("item_id").cast(pl.Int64),
        pl.lit("rate").alias("event_type"),
        pl.col("rating").cast(pl.Float64).alias("value"),
        ts.alias("ts"),
        ts.dt.date().alias("event_date"),
        pl.lit(None, pl.Int64).alias("session_id"),
        pl.lit("movielens-100k").alias("source"),
    )
    return conform(frame, INTERACTION_SCHEMA)
