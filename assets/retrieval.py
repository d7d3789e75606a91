"""candidate_pool (the rankers' input) and retrieval_evaluation (the retrieval funnel in eval.metrics)."""

import dagster as dg
import polars as pl

from assets import candidates, pi2i
from assets.catalog import catalog, observe, results, table_spec
from assets.common import (
    DUCKDB_POOL,
    FOLDS,
    StagedTables,
    eval_rows,
    eval_tags,
    every_target_user,
    fold_completion,
    fold_sample,
    fold_truth,
    load_candidates,
    load_split,
    sample_truth,
    user_ranges,
)
from assets.metadata import figure, md, png, table_metadata
from assets.partitions import cutoff_partitions
from recsys.metrics import evaluate
from recsys.pool import build_pool, funnel_ks, funnel_table, list_depth, pool_as_recs
from resources.datasets import DatasetSource
from resources.warehouse import Warehouse

# Stage names in eval.metrics (issue contract): every channel table candidates.<stage>.
CHANNEL_STAGES = ["pop", "itemcf", "swing", "als", "ease", "two_tower", "content", "tgh", "pi2i_index", "pi2i"]
CHANNEL_ASSETS = [getattr(candidates, f"candidates_{s}") for s in CHANNEL_STAGES[:8]] + ["pi2i_index", pi2i.pi2i_candidates]
FUNNEL_KS = (50, 100, 200)
ACCURACY_METRICS = ("hit_rate", "recall", "precision", "ndcg", "mrr", "map")


class PoolConfig(dg.Config):
    per_channel: int = 100  # top-N taken from each channel
    max_size: int = 300  # bound on a user's pool after fusion
    keep_top: int = 20  # each channel's top items survive the cut to max_size (recsys.pool.build_pool)
    # Each fold's pool is built and written per block of this many users (user_id ranges): every channel's lists
    # of those users are read from DuckDB, fused, and appended to a staging table renamed into place once
    # complete, so memory follows the block, not the fold (users x channels x per_channel rows); the tables are
    # identical for every value. 0 = the whole fold at once.
    block_users: int = 5_000


@dg.multi_asset(
    specs=[
        table_spec(
            "candidate_pool",
            "candidates.pool",
            "candidates.pool: union of channels per user with each channel's score and rank as columns, bounded in size.",
            deps=CHANNEL_ASSETS,
            kinds={"polars", "duckdb"},
        ),
        table_spec(
            "candidates_pool_ranked",
            "candidates.pool_ranked",
            "candidates.pool_ranked: the pool as one ranked list per user (reciprocal-rank fusion), evaluated as stage 'pool'.",
            deps=CHANNEL_ASSETS,
            kinds={"polars", "duckdb"},
        ),
    ],
    can_subset=True,  # selecting either key runs the step, which writes both (catalog.results)
    pool=DUCKDB_POOL,
    group_name="candidates",
    partitions_def=cutoff_partitions,
)
def candidate_pool(context: dg.AssetExecutionContext, config: PoolConfig, warehouse: Warehouse):
    staged = StagedTables(warehouse)
    for fold in FOLDS:
        completion = fold_completion(warehouse, fold)  # files protocol: every evaluated user gets a list
        listed = warehouse.query(
            " UNION ".join(f"SELECT DISTINCT user_id FROM candidates.{stage} WHERE fold = $fold" for stage in CHANNEL_STAGES),
            {"fold": fold},
        )["user_id"]
        ids = listed if completion is None else pl.concat([listed, completion[0].cast(listed.dtype)])
        for user_range in user_ranges(ids, config.block_users):
            per_channel = {
                stage: load_candidates(warehouse, stage, fold, user_range=user_range, completion=completion) for stage in CHANNEL_STAGES
            }
            pool = build_pool(per_channel, per_channel=config.per_channel, max_size=config.max_size, keep_top=config.keep_top)
            staged.add("candidates.pool", pool.with_columns(pl.lit(fold).alias("fold")))
            ranked = pool_as_recs(pool).with_columns(pl.lit(fold).alias("fold"))
            staged.add("candidates.pool_ranked", ranked.select("fold", "user_id", "item_id", "score", "rank"))
            del per_channel, pool, ranked
    if not staged.schemas:
        raise dg.Failure("candidate_pool: no channel has a list for any valid or test user", allow_retries=False)
    staged.publish()
    sizes = warehouse.query(
        "SELECT fold, avg(n) AS mean_pool_size, max(n) AS max_pool_size, count(*) AS users "
        "FROM (SELECT fold, user_id, count(*) AS n FROM candidates.pool GROUP BY ALL) GROUP BY fold ORDER BY fold"
    )
    overlap = warehouse.query("SELECT fold, n_channels, count(*) AS len FROM candidates.pool GROUP BY ALL ORDER BY fold, n_channels")
    yield from results(
        context,
        dg.MaterializeResult(
            asset_key="candidate_pool",
            metadata={
                **table_metadata(warehouse, "candidates.pool"),
                "pool_sizes": md(sizes),
                "items_by_channels_agreeing": md(overlap, 40),
            },
        ),
        dg.MaterializeResult(asset_key="candidates_pool_ranked", metadata=table_metadata(warehouse, "candidates.pool_ranked")),
    )


@dg.asset(
    deps=["candidate_pool", "candidates_pool_ranked"],
    pool=DUCKDB_POOL,
    group_name="evaluation",
    partitions_def=cutoff_partitions,
    kinds={"polars", "duckdb"},
    **catalog(layer="evaluation"),  # its rows are in the shared eval.metrics (catalog: eval_metrics)
    description="Retrieval funnel: HitRate/Recall/... at K in 50/100/200 and at each list's full depth (the pool at its full "
    "size) for every channel and the pool, on both folds, into eval.metrics.",
)
def retrieval_evaluation(context: dg.AssetExecutionContext, warehouse: Warehouse, source: DatasetSource) -> dg.MaterializeResult:
    data = load_split(warehouse)
    rows, depths, samples, fold_samples = [], {}, {}, {}
    for fold in FOLDS:
        history, target, truth = fold_truth(data, fold)
        # valid: past RECDAG_TRAIN_USERS, only the sampled users have lists (assets.common.fold_sample): the others
        # are not scored, rather than counted as misses
        users, fold_samples[fold] = fold_sample(fold, target, history, every_target_user(data.params))
        if fold_samples[fold].sampled:
            truth = truth.join(users.cast(pl.Int64).to_frame(), on="user_id", how="semi")
        # past RECDAG_EVAL_USERS, the seeded uniform sample evaluation draws (seed 0: EvaluationConfig's default)
        truth, samples[fold] = sample_truth(target, truth, seed=0)
        for stage in [*CHANNEL_STAGES, "pool"]:
            recs = load_candidates(warehouse, "pool_ranked" if stage == "pool" else stage, fold)
            depths[fold, stage] = list_depth(recs)
            if samples[fold].sampled or fold_samples[fold].sampled:
                recs = recs.join(truth.select("user_id").unique(), on="user_id", how="semi")
            scores = evaluate(recs, truth, ks=funnel_ks(FUNNEL_KS, depths[fold, stage]), metrics=ACCURACY_METRICS)
            rows.append(eval_rows(scores, **eval_tags(context.run.run_id, data, source), fold=fold, stage=stage))
    out = pl.concat(rows)
    warehouse.append("eval.metrics", out)
    observe(context, warehouse, "eval.metrics")
    funnel = {
        fold: funnel_table(out.filter(pl.col("fold") == fold), {s: d for (f, s), d in depths.items() if f == fold}, FUNNEL_KS)
        for fold in FOLDS
    }
    return dg.MaterializeResult(
        metadata={
            "funnel_test": md(funnel["test"], 40),  # recall/hit at each K and at full depth: the pool next to each channel
            "funnel_valid": md(funnel["valid"], 40),
            "funnel_plot": png(_funnel_plot(out)),
            "n_rows": out.height,
            "user_sample": dg.MetadataValue.json({fold: sample.describe(f"{fold} users") for fold, sample in samples.items()}),
            "valid_users": fold_samples["valid"].describe("valid users"),  # RECDAG_TRAIN_USERS: the users valid lists are made for
        }
    )


def _funnel_plot(out: pl.DataFrame):
    fig, ax = figure(7, 4)
    test = out.filter((pl.col("fold") == "test") & (pl.col("metric") == "recall"))
    for stage in test["stage"].unique().sort().to_list():
        part = test.filter(pl.col("stage") == stage).sort("k")
        ax.plot(part["k"].to_list(), part["value"].to_list(), marker="o", label=stage)
    ax.set_xlabel("K (candidates per user)")
    ax.set_ylabel("Recall@K (test fold)")
    ax.set_title("Retrieval funnel")
    ax.legend(fontsize=7, ncol=2)
    return fig
