"""The candidate pool: the union of channels per user, one column pair per channel.

``build_pool({"pop": recs, "itemcf": recs, ...}, per_channel=100, max_size=300)`` returns one row
per (user_id, item_id) with ``{c}__score`` / ``{c}__rank`` (null when channel c did not retrieve the
item), ``n_channels`` and ``rrf`` (reciprocal-rank fusion, sum of 1/(60 + rank)), which also orders
the pool and decides what is cut when a user's union exceeds ``max_size``; rrf ties go to the better
rank in the first channel (in the order given) that ranks the two items differently.
"""

from __future__ import annotations

import polars as pl

RRF_K = 60.0


def build_pool(channel_recs: dict[str, pl.DataFrame], per_channel: int = 100, max_size: int = 300) -> pl.DataFrame:
    if not channel_recs:
        raise ValueError("build_pool needs at least one channel")
    long = pl.concat(
        [
            recs.filter(pl.col("rank") <= per_channel)
            .select("user_id", "item_id", "score", "rank")
            .with_columns(pl.lit(name).alias("channel"))
            for name, recs in channel_recs.items()
        ],
        how="vertical",
    )
    wide = long.pivot(on="channel", index=["user_id", "item_id"], values=["score", "rank"], aggregate_function="first")
    renames = {}
    for name in channel_recs:
        renames[f"score_{name}"] = f"{name}__score"
        renames[f"rank_{name}"] = f"{name}__rank"
    wide = wide.rename({k: v for k, v in renames.items() if k in wide.columns})
    for name in channel_recs:  # a channel with no rows at all still gets its (null) columns
        if f"{name}__score" not in wide.columns:
            wide = wide.with_columns(pl.lit(None, pl.Float64).alias(f"{name}__score"), pl.lit(None, pl.Int32).alias(f"{name}__rank"))
    fused = long.group_by("user_id", "item_id").agg(pl.len().alias("n_channels"), (1.0 / (RRF_K + pl.col("rank"))).sum().alias("rrf"))
    pool = (
        wide.join(fused, on=["user_id", "item_id"], how="inner")
        .with_columns([pl.col(f"{n}__rank").cast(pl.Int32) for n in channel_recs])
        .with_columns([pl.col(f"{n}__score").cast(pl.Float64) for n in channel_recs])
        # rrf ties are broken by the channels' ranks (in channel order, absent last), never by item_id:
        # two items of one user never share a rank in a channel, so the order is total and label-free
        .sort(
            ["user_id", "rrf", *[f"{n}__rank" for n in channel_recs]],
            descending=[False, True, *[False] * len(channel_recs)],
            nulls_last=True,
        )
        .with_columns(pl.int_range(1, pl.len() + 1).over("user_id").cast(pl.Int32).alias("pool_rank"))
        .filter(pl.col("pool_rank") <= max_size)
    )
    ordered = ["user_id", "item_id", "n_channels", "rrf", "pool_rank"]
    for name in channel_recs:
        ordered += [f"{name}__score", f"{name}__rank"]
    return pool.select(ordered)


def pool_as_recs(pool: pl.DataFrame) -> pl.DataFrame:
    """The pool as a recommendation frame ranked by reciprocal-rank fusion."""
    return pool.select("user_id", "item_id", pl.col("rrf").alias("score"), pl.col("pool_rank").alias("rank"))
