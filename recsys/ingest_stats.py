"""Per-partition ingestion counts and the volume baseline the ingestion checks read.

- ``per_day_counts(batch, keys)``: one row per partition key of a run (plus ``unroutable`` when
  lines had no day) with ``n_read = n_loaded + n_quarantined``.
- ``volume_ratios(stored, days, trailing)``: each day's loaded rows divided by the median of the
  ``trailing`` partitions before it (stored ones and earlier days of the same run); the first
  days, with fewer than 3 predecessors, have no baseline (null ratio).
"""

from __future__ import annotations

import polars as pl

from recsys.sources import UNROUTABLE, ParsedBatch


def per_day_counts(batch: ParsedBatch, keys: list[str]) -> pl.DataFrame:
    loaded = (  # group by the date, then name the few groups (not a string per row)
        batch.interactions.group_by("event_date")
        .agg(pl.len().alias("n_loaded"))
        .select(pl.col("event_date").cast(pl.Utf8).alias("partition"), "n_loaded")
    )
    quarantined = batch.quarantine.group_by("partition").agg(pl.len().alias("n_quarantined"))
    days = pl.DataFrame({"partition": sorted(set(keys) | set(quarantined["partition"].to_list()))}, schema={"partition": pl.Utf8})
    return (
        days.join(loaded, on="partition", how="left")
        .join(quarantined, on="partition", how="left")
        .with_columns(pl.col("n_loaded", "n_quarantined").fill_null(0).cast(pl.Int64))
        .with_columns((pl.col("n_loaded") + pl.col("n_quarantined")).alias("n_read"))
        .select("partition", "n_read", "n_loaded", "n_quarantined")
    )


def volume_ratios(stored: pl.DataFrame, days: pl.DataFrame, trailing: int) -> pl.DataFrame:
    """(partition, n_loaded, baseline, ratio) for ``days`` (unroutable lines excluded)."""
    days = days.filter(pl.col("partition") != UNROUTABLE).select("partition", "n_loaded").sort("partition")
    series = pl.concat([stored.select("partition", pl.col("n_loaded").cast(pl.Int64)), days]).sort("partition")
    baseline = series.with_columns(pl.col("n_loaded").shift(1).rolling_median(trailing, min_samples=3).alias("baseline"))
    return (
        baseline.join(days.select("partition"), on="partition", how="semi")
        .with_columns((pl.col("n_loaded") / pl.col("baseline")).alias("ratio"))
        .select("partition", "n_loaded", "baseline", "ratio")
    )
