"""The candidate pool: the union of channels per user, one column pair per channel.

``build_pool({"pop": recs, "itemcf": recs, ...}, per_channel=100, max_size=300, keep_top=20)`` returns
one row per (user_id, item_id) with ``{c}__score`` / ``{c}__rank`` (null when channel c did not
retrieve the item), ``n_channels``, ``rrf`` (reciprocal-rank fusion, sum of 1/(60 + rank)) and
``pool_rank`` (1.. in rrf order; rrf ties go to the better rank in the first channel, in the order
given, that ranks the two items differently; never to the item id).

What is cut when a user's union exceeds ``max_size``: fusion must not drop what a channel ranks near
its top (a channel that agrees with no other, e.g. a sequence-aware one, would otherwise lose its
best items to items several channels rank mediocre). Each channel's top ``keep_top`` items are taken
first, then the rest fills up to ``max_size`` by rrf. ``max_size`` stays a hard bound: when the
channels' top items alone exceed it (channels × keep_top > max_size, with little overlap), they are
taken depth by depth (every channel's #1, then every channel's #2, ...; within one depth by rrf), so
each channel keeps at least its top ``max_size // channels``. ``keep_top=0`` is plain rrf truncation.
The kept items are then ordered by rrf as above: when nothing is cut, ``keep_top`` changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

RRF_K = 60.0


def build_pool(channel_recs: dict[str, pl.DataFrame], per_channel: int = 100, max_size: int = 300, keep_top: int = 20) -> pl.DataFrame:
    if not channel_recs:
        raise ValueError("build_pool needs at least one channel")
    if max_size < 1 or per_channel < 1 or keep_top < 0:
        raise ValueError(f"need per_channel >= 1, max_size >= 1, keep_top >= 0; got {per_channel}, {max_size}, {keep_top}")
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
    ranks = [f"{n}__rank" for n in channel_recs]
    # rrf ties are broken by the channels' ranks (in channel order, absent last), never by item_id:
    # two items of one user never share a rank in a channel, so the order is total and label-free
    by_rrf, by_rrf_desc = ["rrf", *ranks], [True, *[False] * len(ranks)]
    depth = pl.min_horizontal(ranks)  # the item's best rank in any channel
    protected = depth <= keep_top
    pool = (
        wide.join(fused, on=["user_id", "item_id"], how="inner")
        .with_columns([pl.col(r).cast(pl.Int32) for r in ranks])
        .with_columns([pl.col(f"{n}__score").cast(pl.Float64) for n in channel_recs])
        # the cut: channels' top keep_top items first (depth by depth), then the rest by rrf
        .with_columns(pl.when(protected).then(depth).otherwise(keep_top + 1).alias("_take"))
        .sort(["user_id", "_take", *by_rrf], descending=[False, False, *by_rrf_desc], nulls_last=True)
        .filter(pl.int_range(1, pl.len() + 1).over("user_id") <= max_size)
        .sort(["user_id", *by_rrf], descending=[False, *by_rrf_desc], nulls_last=True)
        .with_columns(pl.int_range(1, pl.len() + 1).over("user_id").cast(pl.Int32).alias("pool_rank"))
    )
    ordered = ["user_id", "item_id", "n_channels", "rrf", "pool_rank"]
    for name in channel_recs:
        ordered += [f"{name}__score", f"{name}__rank"]
    return pool.select(ordered)


def list_depth(recs: pl.DataFrame) -> int:
    """A recommendation frame's longest list (its deepest rank); 0 when empty."""
    return int(recs["rank"].max() or 0) if recs.height else 0


def funnel_ks(ks: Sequence[int], depth: int) -> list[int]:
    """The funnel's Ks plus the list's full depth (so the pool is also measured at its full size)."""
    return sorted({*ks, depth} - {0})


def funnel_table(
    rows: pl.DataFrame, depths: dict[str, int], ks: Sequence[int], metrics: Sequence[str] = ("recall", "hit_rate")
) -> pl.DataFrame:
    """One row per stage (in ``depths`` order): its list ``depth``, ``{metric}@{k}`` for each K and
    ``{metric}@full`` (at the stage's own depth: a channel's whole list, the pool at its full size).
    ``rows``: one fold's evaluation rows, columns stage, metric, k, value."""
    order = pl.DataFrame({"stage": list(depths), "depth": list(depths.values()), "_order": range(len(depths))})
    part = rows.filter(pl.col("metric").is_in(list(metrics))).join(order, on="stage", how="inner")
    at_k = part.filter(pl.col("k").is_in(list(ks))).with_columns(pl.format("{}@{}", "metric", "k").alias("_col"))
    full = part.filter(pl.col("k") == pl.col("depth")).with_columns((pl.col("metric") + "@full").alias("_col"))
    wide = pl.concat([at_k, full]).pivot(on="_col", index=["stage", "depth", "_order"], values="value")
    columns = [f"{m}@{k}" for m in metrics for k in [*ks, "full"]]
    return wide.sort("_order").select("stage", "depth", *[c for c in columns if c in wide.columns])


def pool_as_recs(pool: pl.DataFrame) -> pl.DataFrame:
    """The pool as a recommendation frame ranked by reciprocal-rank fusion."""
    return pool.select("user_id", "item_id", pl.col("rrf").alias("score"), pl.col("pool_rank").alias("rank"))
