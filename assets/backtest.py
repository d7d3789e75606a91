"""evaluation_summary: users pooled across every evaluated rolling-origin cut-off.

Reads eval.per_user (written by each cut-off partition of ``evaluation``), keeps the newest run of
each cut-off for the split's dataset and protocol, and pools (cutoff, user) units: the pooled value
with a stratified bootstrap interval (users resampled within cut-offs, recsys.backtest), and paired
tests of the served stage against every other stage on the same units, Holm-corrected across the
comparisons. Rows go to eval.metrics with ``cutoff = 'pooled'``; the paired tests to
eval.pooled_paired_test. It then writes the run's self-contained HTML report
($RECDAG_DATA_DIR/exports/report.html, recsys.report). Only stages evaluated at every pooled cut-off are pooled, so each stage is
judged on the same users.
"""

import json

import dagster as dg
import polars as pl

from assets.catalog import IO_RETRY, SERVING_FRESHNESS, catalog, observe
from assets.common import DUCKDB_POOL, eval_rows
from assets.evaluation import HEADLINE_K
from assets.metadata import headline_table, md, table_metadata
from recsys.backtest import paired_against, pooled_bootstrap
from resources.datasets import DatasetSource
from resources.reports import write_report
from resources.warehouse import Warehouse

POOLED = "pooled"


class EvaluationSummaryConfig(dg.Config):
    n_boot: int = 1000
    seed: int = 0
    alpha: float = 0.05


def _served_stage(warehouse: Warehouse) -> str | None:
    if not warehouse.table_exists("serving.recommendations"):
        return None
    rows = warehouse.query("SELECT DISTINCT model FROM serving.recommendations")
    return rows["model"][0] if rows.height == 1 else None


@dg.asset(
    deps=[dg.AssetDep("evaluation", partition_mapping=dg.AllPartitionMapping())],
    pool=DUCKDB_POOL,
    group_name="evaluation",
    kinds={"polars", "duckdb"},
    freshness_policy=SERVING_FRESHNESS,
    retry_policy=IO_RETRY,  # writes the HTML report
    **catalog("eval.pooled_paired_test"),
    description=(
        "Users pooled across every evaluated cut-off (newest run of each): pooled accuracy with stratified bootstrap 95% CIs, "
        "paired tests of the served stage against every other stage (Holm-corrected); eval.metrics rows with cutoff 'pooled'."
    ),
)
def evaluation_summary(
    context: dg.AssetExecutionContext, config: EvaluationSummaryConfig, warehouse: Warehouse, source: DatasetSource
) -> dg.MaterializeResult:
    params = json.loads(warehouse.query("SELECT CAST(params AS VARCHAR) AS p FROM staging.split_params").row(0)[0])
    dataset, protocol = params.get("dataset") or source.name, params.get("protocol", "?")
    per_user = warehouse.query_file("analytics/per_user_latest", {"dataset": dataset, "protocol": protocol})
    if per_user.is_empty():
        raise ValueError(f"eval.per_user has no rows for dataset {dataset!r}, protocol {protocol!r}: materialize evaluation first")
    cutoffs = sorted(per_user["cutoff"].unique())
    everywhere = per_user.group_by("stage").agg(pl.col("cutoff").n_unique().alias("n")).filter(pl.col("n") == len(cutoffs))["stage"]
    dropped = sorted(set(per_user["stage"]) - set(everywhere))
    per_user = per_user.filter(pl.col("stage").is_in(everywhere.implode()))
    pooled = pooled_bootstrap(per_user.drop("run_id"), n_boot=config.n_boot, alpha=config.alpha, seed=config.seed)
    rows = pl.concat(
        [
            eval_rows(
                part.drop("stage", "n_cutoffs"),
                run_id=context.run.run_id,
                dataset=dataset,
                protocol=protocol,
                fold="test",
                stage=stage,
                cutoff=POOLED,
            )
            for (stage,), part in pooled.group_by(["stage"], maintain_order=True)
        ]
    )
    # the final stage (the guard's choice at each cut-off) is what was served; older runs: the served model
    reference = "final" if "final" in set(everywhere) else _served_stage(warehouse)
    if reference not in set(everywhere):
        reference = "lgbm_ranker" if "lgbm_ranker" in set(everywhere) else None
    paired = paired_against(per_user, reference, HEADLINE_K, config.n_boot, config.seed, config.alpha) if reference else pl.DataFrame()
    with warehouse.connect() as con:
        con.begin()
        warehouse.append("eval.metrics", rows, con=con)
        if paired.height:
            warehouse.write_table(
                "eval.pooled_paired_test",
                paired.with_columns(pl.lit(context.run.run_id).alias("run_id"), pl.lit(",".join(cutoffs)).alias("cutoffs")),
                con=con,
            )
        con.commit()
    per_cutoff = (
        per_user.filter((pl.col("metric") == "ndcg") & (pl.col("k") == HEADLINE_K))
        .group_by("stage", "cutoff")
        .agg(pl.col("value").mean().round(4))
        .pivot(on="cutoff", index="stage", values="value", sort_columns=True)
        .sort("stage")
    )
    report = write_report(warehouse, context.run.run_id)
    observe(context, warehouse, "eval.metrics")
    headline = pooled.filter(pl.col("k") == HEADLINE_K)
    context.log.info(f"evaluation_summary: {len(cutoffs)} cut-offs {cutoffs}, {headline['n_users'].max()} (cutoff, user) units")
    pooled_table = table_metadata(warehouse, "eval.pooled_paired_test") if warehouse.table_exists("eval.pooled_paired_test") else {}
    return dg.MaterializeResult(
        metadata={
            **pooled_table,
            "pooled_headline": headline_table(headline),
            "paired_tests_holm": md(paired, 40),
            "ndcg10_per_cutoff": md(per_cutoff, 40),
            "cutoffs": ", ".join(cutoffs),
            "n_cutoffs": len(cutoffs),
            "units": int(headline["n_users"].max()),
            "reference_stage": reference or "",
            "report": dg.MetadataValue.path(str(report)),
            "stages_not_at_every_cutoff": ", ".join(dropped) or "none",
        }
    )
