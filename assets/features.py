"""event_features → outrank_ranking → selected_features (OutRank, Škrlj & Mramor, RecSys 2023)."""

import dagster as dg
import polars as pl

from assets.catalog import catalog, results, table_spec
from assets.common import DUCKDB_POOL
from assets.metadata import figure, md, png, table_metadata
from assets.partitions import cutoff_partitions
from recsys import outrank
from recsys.event_features import bucketize, select_features
from resources.warehouse import Warehouse, load_sql


class EventFeaturesConfig(dg.Config):
    min_positive_rating: float = 4.0
    max_rows: int = 2_000_000  # the most recent training events; OutRank is O(N) but memory is not free
    control_seed: int = 0


@dg.asset(
    deps=["split"],
    pool=DUCKDB_POOL,
    group_name="features",
    partitions_def=cutoff_partitions,
    kinds={"duckdb", "polars"},
    **catalog("features.event_features"),
    description="features.event_features: one row per training interaction, a label and categorical features, plus matched-cardinality controls.",
)
def event_features(context: dg.AssetExecutionContext, config: EventFeaturesConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    rows = warehouse.query(load_sql("features/event_features"), {"min_positive_rating": config.min_positive_rating})
    if rows.height > config.max_rows:
        rows = rows.tail(config.max_rows)
    features = bucketize(rows)
    real = [c for c in features.columns if c != "label"]
    with_controls = outrank.add_control_features(features, real, seed=config.control_seed)
    warehouse.write_table("features.event_features", with_controls)
    positives = float(with_controls["label"].mean()) if with_controls.height else 0.0
    cards = pl.DataFrame({"feature": real, "cardinality": [features[c].n_unique() for c in real]})
    return dg.MaterializeResult(
        metadata={
            **table_metadata(warehouse, "features.event_features"),
            "rows": with_controls.height,
            "positive_share": positives,
            "features": md(cards, 60),
        }
    )


class OutRankConfig(dg.Config):
    heuristic: str = "MI-randomized"
    n_jobs: int = 2
    redundancy_threshold: float = 0.9


@dg.multi_asset(
    specs=[
        table_spec(
            "outrank_ranking",
            "features.outrank_scores",
            "features.outrank_scores: cardinality-corrected MI ranking, 3MR, above-noise flags and the selection.",
            deps=[event_features],
            kinds={"duckdb", "polars"},
        ),
        table_spec(
            "feature_quality_report",
            "features.quality_report",
            "features.quality_report: per feature cardinality, coverage, rare values, constant, suspected label leakage.",
            deps=[event_features],
            kinds={"duckdb", "polars"},
        ),
        table_spec(
            "redundant_pairs",
            "features.redundant_pairs",
            "features.redundant_pairs: feature pairs above the redundancy threshold (the selection keeps one of each).",
            deps=[event_features],
            kinds={"duckdb", "polars"},
        ),
    ],
    can_subset=True,  # selecting any key runs the step, which writes all three (catalog.results)
    pool=DUCKDB_POOL,
    group_name="features",
    partitions_def=cutoff_partitions,
    check_specs=[
        dg.AssetCheckSpec("no_leakage_or_constant", asset="outrank_ranking", description="WARN: no feature leaks the label or is constant"),
    ],
)
def outrank_ranking(context: dg.AssetExecutionContext, config: OutRankConfig, warehouse: Warehouse):
    frame = warehouse.table("features.event_features")
    scores = outrank.rank_features(frame, "label", heuristic=config.heuristic, n_jobs=config.n_jobs)
    three_mr = outrank.rank_features(frame, "label", heuristic="3MR", n_jobs=config.n_jobs)
    report = outrank.quality_report(frame, "label")
    if "above_noise" not in scores.columns:
        scores = outrank.above_noise(scores)
    real = scores.filter(~pl.col("feature").str.starts_with(outrank.CONTROL_PREFIX))
    pairs = outrank.redundant_pairs(frame, real["feature"].to_list(), threshold=config.redundancy_threshold)
    table = real.join(report.select("feature", "leakage", "is_constant", "rare_value_share"), on="feature", how="left").with_columns(
        pl.lit(config.heuristic).alias("heuristic"), pl.lit(context.run.run_id).alias("run_id")
    )
    selected = select_features(table, pairs)
    table = table.with_columns(pl.col("feature").is_in(selected).alias("selected"))
    stored = table.select("feature", "heuristic", "score", "rank", "cardinality", "coverage", "above_noise", "selected", "run_id")
    three_mr_rows = (
        three_mr.select("feature", pl.lit("3MR").alias("heuristic"), "score", "rank")
        .join(stored.select("feature", "cardinality", "coverage", "above_noise", "selected", "run_id"), on="feature", how="inner")
        .select(stored.columns)
    )
    with warehouse.connect() as con:
        con.begin()
        warehouse.write_table("features.outrank_scores", pl.concat([stored, three_mr_rows]), con=con)
        warehouse.write_table("features.quality_report", report, con=con)
        warehouse.write_table("features.redundant_pairs", pairs, con=con)
        con.commit()
    leaks = report.filter(pl.col("leakage"))["feature"].to_list()
    constants = report.filter(pl.col("is_constant"))["feature"].to_list()
    check = dg.AssetCheckResult(
        check_name="no_leakage_or_constant",
        passed=not leaks and not constants,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"leaking: {leaks or 'none'}; constant: {constants or 'none'}",
    )
    warehouse.record_check(
        "outrank_ranking",
        "no_leakage_or_constant",
        None,
        check.passed,
        "WARN",
        {"leaking": leaks, "constant": constants},
        context.run.run_id,
    )
    ranking = dg.MaterializeResult(
        asset_key="outrank_ranking",
        metadata={
            **table_metadata(warehouse, "features.outrank_scores"),
            "ranking": md(stored.select("rank", "feature", "score", "cardinality", "above_noise", "selected"), 60),
            "chart": png(_bar_chart(scores)),
            "three_mr": md(three_mr.select("rank", "feature", "score"), 40),
            "quality_report": md(report, 60),
            "redundant_pairs": md(pairs, 30),
            "n_selected": len(selected),
        },
        check_results=[check],
    )
    yield from results(
        context,
        ranking,
        dg.MaterializeResult(asset_key="feature_quality_report", metadata=table_metadata(warehouse, "features.quality_report")),
        dg.MaterializeResult(asset_key="redundant_pairs", metadata=table_metadata(warehouse, "features.redundant_pairs")),
    )


def _bar_chart(scores: pl.DataFrame):
    fig, ax = figure(8, max(3.0, 0.25 * scores.height))
    ordered = scores.sort("score")
    colors = ["#bbbbbb" if f.startswith(outrank.CONTROL_PREFIX) else "#3b7dd8" for f in ordered["feature"]]
    ax.barh(ordered["feature"].to_list(), ordered["score"].to_list(), color=colors)
    ax.set_xlabel("cardinality-corrected MI (grey: matched-cardinality controls)")
    ax.set_title("OutRank feature ranking")
    return fig


@dg.asset(
    deps=["outrank_ranking"],
    pool=DUCKDB_POOL,
    group_name="features",
    partitions_def=cutoff_partitions,
    kinds={"duckdb"},
    **catalog("features.selected_features"),
    description="features.selected_features: features above noise, de-duplicated by redundancy; read by PI2I and the rankers.",
)
def selected_features(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    chosen = warehouse.query("SELECT feature, score, rank FROM features.outrank_scores WHERE selected AND heuristic <> '3MR' ORDER BY rank")
    warehouse.write_table("features.selected_features", chosen)
    return dg.MaterializeResult(
        metadata={**table_metadata(warehouse, "features.selected_features"), "selected": md(chosen), "n": chosen.height}
    )
