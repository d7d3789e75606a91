"""event_features → outrank_ranking → selected_features (OutRank, Škrlj & Mramor, RecSys 2023)."""

import datetime as dt
import json

import dagster as dg
import polars as pl

from assets.catalog import catalog, results, table_spec
from assets.common import DUCKDB_POOL, engine_kinds, load_items, load_users
from assets.metadata import figure, md, png, table_metadata
from assets.partitions import cutoff_partitions
from recsys import outrank
from recsys.event_features import (
    RAW_ID_SUFFIX,
    bucketize,
    finish_outrank_rows,
    item_categories,
    label_window_start_at,
    outrank_row_params,
    select_features,
    select_features_3mr,
)
from resources.engine import SqlEngine
from resources.warehouse import Warehouse


class EventFeaturesConfig(dg.Config):
    # OutRank's label window: the last label_window_days of the train fold; 0 = the split's own
    # window (temporal protocol), or without one the last label_window_frac of train's events
    label_window_days: float = 0.0
    label_window_frac: float = 0.1
    negatives_per_positive: int = 10  # popularity-sampled unseen items per positive, as a pool holds
    oversample: float = 3.0  # popularity draws per wanted negative (more for heavy users): sql/features/outrank_rows.sql
    seed: int = 0
    # whole users in a seeded order while their rows fit: OutRank's MI runs in memory on this frame
    max_rows: int = 2_000_000
    control_seed: int = 0


def _train_end(params: dict) -> dt.datetime | None:
    """The train fold's end (the valid window's first instant) when the split records it."""
    start = params.get("t_valid_start")
    return dt.datetime.fromisoformat(start) if start else None


@dg.asset(
    deps=["split"],
    pool=DUCKDB_POOL,
    group_name="features",
    partitions_def=cutoff_partitions,
    kinds=engine_kinds("duckdb", "polars"),
    **catalog("features.event_features"),
    description=(
        "features.event_features: OutRank's input, shaped and labelled like the rankers' rows, from the train fold only: "
        "(user, unseen item) pairs as of a label window at the end of train, label = the pair occurs in that window; "
        "categorical features plus matched-cardinality controls. The rows are sql/features/outrank_rows.sql, on the engine."
    ),
)
def event_features(
    context: dg.AssetExecutionContext, config: EventFeaturesConfig, warehouse: Warehouse, engine: SqlEngine
) -> dg.MaterializeResult:
    # the train fold only: OutRank's label must never come from the valid or test fold's events
    params = json.loads(warehouse.query("SELECT CAST(params AS VARCHAR) AS p FROM staging.split_params").row(0)[0])
    window_days = config.label_window_days or params.get("window_days")
    train = warehouse.query_file("features/train_window", {"start": None}).row(0, named=True)
    start = label_window_start_at(
        int(train["n_train"]),
        lambda pos: warehouse.query_file("features/train_ts_at", {"pos": pos})["ts"][0],
        window_days,
        config.label_window_frac,
        end=_train_end(params) or train["last_ts"],  # train's end, or its last event
    )
    users, items = load_users(warehouse), load_items(warehouse)
    sql_params = outrank_row_params(start, config.negatives_per_positive, config.seed, config.max_rows, config.oversample)
    raw = engine.query_beside("features/outrank_rows", sql_params, {"features.outrank_item_categories": item_categories(items)}, warehouse)
    if raw.is_empty():
        raise dg.Failure(
            f"event_features: no user has both history before {start} and events after it in the train fold", allow_retries=False
        )
    rows = finish_outrank_rows(raw, users, items)
    features = bucketize(rows)
    real = [c for c in features.columns if c != "label"]
    with_controls = outrank.add_control_features(features, real, seed=config.control_seed)
    warehouse.write_table("features.event_features", with_controls)
    positives = float(with_controls["label"].mean())
    cards = pl.DataFrame({"feature": real, "cardinality": [features[c].n_unique() for c in real]})
    window = warehouse.query_file("features/train_window", {"start": start}).row(0, named=True)
    wanted = int((raw["label"] == 1).sum()) * config.negatives_per_positive
    return dg.MaterializeResult(
        metadata={
            **table_metadata(warehouse, "features.event_features"),
            "rows": with_controls.height,
            "positive_share": positives,
            "negatives_drawn": f"{int((raw['label'] == 0).sum())} of {wanted} wanted (oversample {config.oversample})",
            "label_window": f"{start} .. {window['last_ts']} (train fold; {window['n_window']} of {window['n_train']} train events)",
            "label_window_days": float(window_days) if window_days else -1.0,
            "users": int(rows["user_id_raw"].n_unique()),
            "built_on": f"{engine.kind} (sql/features/outrank_rows.sql)",
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
    report = outrank.quality_report(frame, "label")
    if "above_noise" not in scores.columns:
        scores = outrank.above_noise(scores)
    real = scores.filter(~pl.col("feature").str.starts_with(outrank.CONTROL_PREFIX))
    # 3MR over the features a ranker could use (raw ids are never handed on) and their controls: an
    # id picked first would make every later pick's "relation" mostly the id's own signal
    usable = [f for f in real["feature"].to_list() if not f.endswith(RAW_ID_SUFFIX)]
    three_mr = outrank.rank_features(
        frame, "label", heuristic="3MR", features=usable + [outrank.CONTROL_PREFIX + f for f in usable], n_jobs=config.n_jobs
    )
    pairs = outrank.redundant_pairs(frame, real["feature"].to_list(), threshold=config.redundancy_threshold)
    table = real.join(report.select("feature", "leakage", "is_constant", "rare_value_share"), on="feature", how="left").with_columns(
        pl.lit(config.heuristic).alias("heuristic"), pl.lit(context.run.run_id).alias("run_id")
    )
    selected = select_features(table, pairs)
    selected_3mr = select_features_3mr(three_mr, report)
    table = table.with_columns(pl.col("feature").is_in(selected).alias("selected"))
    stored = table.select("feature", "heuristic", "score", "rank", "cardinality", "coverage", "above_noise", "selected", "run_id")
    three_mr_rows = three_mr.filter(~pl.col("is_control")).select(
        "feature",
        pl.lit("3MR").alias("heuristic"),
        "score",
        "rank",
        "cardinality",
        "coverage",
        "above_noise",  # 3MR's own rule: ranked before every control
        pl.col("feature").is_in(selected_3mr).alias("selected"),
        pl.lit(context.run.run_id).alias("run_id"),
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
            "three_mr": md(three_mr.select("rank", "feature", "score", "relevance", "redundancy", "relation", "above_noise"), 60),
            "quality_report": md(report, 60),
            "redundant_pairs": md(pairs, 30),
            "n_selected": len(selected),
            "selected_mi": ", ".join(selected) or "none",
            "selected_3mr": ", ".join(selected_3mr) or "none",
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
    description=(
        "features.selected_features: two feature lists, one row per (selection, feature): 'mi' (above noise by the MI ranking, "
        "de-duplicated by redundant pairs) and '3mr' (3MR's picks before its first control). lgbm_ranker keeps the list with "
        "the better held-out valid NDCG@10; ranker_dataset and PI2I read the union."
    ),
)
def selected_features(context: dg.AssetExecutionContext, warehouse: Warehouse) -> dg.MaterializeResult:
    chosen = warehouse.query(
        "SELECT CASE WHEN heuristic = '3MR' THEN '3mr' ELSE 'mi' END AS selection, feature, score, rank "
        "FROM features.outrank_scores WHERE selected ORDER BY heuristic = '3MR', rank"
    )
    warehouse.write_table("features.selected_features", chosen)
    counts = {s: int((chosen["selection"] == s).sum()) for s in ("mi", "3mr")}
    return dg.MaterializeResult(
        metadata={
            **table_metadata(warehouse, "features.selected_features"),
            "selected": md(chosen),
            "n": chosen["feature"].n_unique(),
            "n_by_selection": dg.MetadataValue.json(counts),
        }
    )
