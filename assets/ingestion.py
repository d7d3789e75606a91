"""Ingestion: raw_interactions (daily partitions), items, users, and the cleaned interactions."""

from datetime import timedelta

import dagster as dg
import polars as pl

from assets.catalog import IO_RETRY, catalog, observe, table_spec
from assets.checks import check_result, plain_check_result
from assets.common import engine_kinds
from assets.metadata import md, md_table, table_metadata
from assets.partitions import DATASET_START, daily_partitions, day_runs, window
from recsys.ingest_stats import per_day_counts, volume_ratios
from recsys.schema import INTERACTION_SCHEMA
from recsys.sources import UNROUTABLE, ParsedBatch
from resources import expectations
from resources.datasets import DatasetSource, source_errors_are_final
from resources.engine import SqlEngine
from resources.gx import GreatExpectationsResource
from resources.warehouse import Warehouse, load_sql, utcnow

DUCKDB_POOL = "duckdb_writer"
SEV_ERROR = dg.AssetCheckSeverity.ERROR
SEV_WARN = dg.AssetCheckSeverity.WARN


class IngestionConfig(dg.Config):
    max_quarantine_share: float = 0.05  # above this a partition is considered corrupted (blocking)
    max_duplicate_share: float = 0.01
    volume_ratio: float = 25.0  # WARN when a day's volume leaves [median/ratio, median*ratio]
    trailing_partitions: int = 7


def _spec(name: str, asset: str, blocking: bool, description: str, partitioned: bool = True) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        name,
        asset=asset,
        blocking=blocking,
        description=description,
        partitions_def=daily_partitions if partitioned else None,
    )


RAW_CHECKS = [
    _spec(
        "contract", "raw_interactions", True, "ERROR: columns, types, non-null keys, event types, timestamps in the partition, rating range"
    ),
    _spec("quarantine_share", "raw_interactions", True, "ERROR: share of lines quarantined stays under the configured maximum"),
    _spec("volume", "raw_interactions", False, "WARN: daily row volume against the trailing partitions' median"),
    _spec("duplicates", "raw_interactions", False, "WARN: share of duplicate (user, item, ts, event) rows"),
]


@dg.multi_asset(
    specs=[
        table_spec(
            "raw_interactions",
            "raw.interactions",
            "raw.interactions: one day-partition of the source's events; bad lines go to quality.quarantine.",
            kinds={"duckdb", "polars"},
        ),
        table_spec(
            "ingestion_log",
            "quality.ingestion_log",
            "quality.ingestion_log: lines read, loaded and quarantined per day and run (the volume check's history).",
            kinds={"duckdb"},
        ),
    ],
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=DUCKDB_POOL,
    check_specs=RAW_CHECKS,
    group_name="ingestion",
    retry_policy=IO_RETRY,  # reads source files; the ML-100K source may download
)
def raw_interactions(
    context: dg.AssetExecutionContext,
    config: IngestionConfig,
    source: DatasetSource,
    warehouse: Warehouse,
    gx_validator: GreatExpectationsResource,
    engine: SqlEngine,
):
    start, end, keys = window(context)
    runs = day_runs(keys)  # consecutive days; a dynamic (live) partition set may skip days
    with source_errors_are_final():
        reader = source.reader()
        batch = ParsedBatch.concat([reader.read_window(lo, hi) for lo, hi in runs])
    now = utcnow()
    raw = batch.interactions.with_columns(pl.lit(now).alias("ingested_at"))
    quarantine = batch.quarantine.with_columns(pl.lit(now).alias("ingested_at"))
    per_day = per_day_counts(batch, keys).with_columns(pl.lit(context.run.run_id).alias("run_id"), pl.lit(now).alias("ingested_at"))

    with warehouse.connect() as con:
        con.begin()
        for lo, hi in runs:
            warehouse.replace_window(con, "raw.interactions", raw.filter(pl.col("event_date").is_between(lo, hi)), lo, hi)
        cleared = keys + ([UNROUTABLE] if DATASET_START is not None and start <= DATASET_START else [])
        con.execute('DELETE FROM quality.quarantine WHERE "partition" IN (SELECT unnest($k))', {"k": cleared})
        warehouse.append("quality.quarantine", quarantine, con=con)
        warehouse.append("quality.ingestion_log", per_day, con=con)
        con.commit()
    if engine.kind == "spark":  # the Spark engine's stages read the day-partitions from the lake
        engine.lake.write_days("raw.interactions", raw.filter(pl.col("event_date").cast(pl.Utf8).is_in(keys)), keys)

    partition_label = keys[0] if len(keys) == 1 else f"{keys[0]}...{keys[-1]}"
    n_loaded, n_quarantined = raw.height, quarantine.height
    context.log.info(f"{partition_label}: read {batch.n_read}, loaded {n_loaded}, quarantined {n_quarantined}")

    # one pandas conversion of the batch for both suites (contract: ERROR, duplicates: WARN)
    contract, anomalies = gx_validator.validate_many(
        batch.interactions,
        [expectations.raw_interactions_contract(start, end), expectations.raw_interactions_anomalies(None, config.max_duplicate_share)],
    )
    share = n_quarantined / batch.n_read if batch.n_read else 0.0
    # a day's share is of its own lines; the unroutable lines (no plausible day, only from closed
    # sources) are a share of every line the run read, not a 100%-quarantined "day" of their own
    of_what = pl.when(pl.col("partition") == UNROUTABLE).then(pl.lit(batch.n_read)).otherwise(pl.col("n_read"))
    bad_days = (
        per_day.filter(pl.col("n_read") > 0).filter(pl.col("n_quarantined") / of_what > config.max_quarantine_share)["partition"].to_list()
    )
    volume = gx_validator.validate(
        _volume_ratios(warehouse, per_day, config),
        expectations.volume_ratio_suite(config.volume_ratio),
    )
    checks = [
        check_result(context, warehouse, "raw_interactions", "contract", contract, SEV_ERROR, partition_label),
        plain_check_result(
            context,
            warehouse,
            "raw_interactions",
            "quarantine_share",
            not bad_days,
            SEV_ERROR,
            partition_label,
            description=(
                f"quarantined {n_quarantined}/{batch.n_read} lines ({share:.2%})"
                + (f"; partitions over {config.max_quarantine_share:.0%}: {', '.join(bad_days)}" if bad_days else "")
            ),
            details={"n_read": batch.n_read, "n_quarantined": n_quarantined, "share": share, "bad_partitions": ",".join(bad_days)},
        ),
        check_result(context, warehouse, "raw_interactions", "volume", volume, SEV_WARN, partition_label),
        check_result(context, warehouse, "raw_interactions", "duplicates", anomalies, SEV_WARN, partition_label),
    ]
    reasons = (
        quarantine.group_by(pl.col("reason").str.split(":").list.first().alias("reason")).len().sort("len", descending=True)
        if quarantine.height
        else pl.DataFrame({"reason": [], "len": []})
    )
    observe(context, warehouse, "quality.quarantine")
    days = {"k": keys}
    yield dg.MaterializeResult(
        asset_key="raw_interactions",
        metadata={
            **table_metadata(warehouse, "raw.interactions", "list_contains($k, CAST(event_date AS VARCHAR))", days),
            "partitions": partition_label,
            "n_read": batch.n_read,
            "n_loaded": n_loaded,
            "n_quarantined": n_quarantined,
            "loaded_plus_quarantined_equals_read": n_loaded + n_quarantined == batch.n_read,
            "quarantine_reasons": dg.MetadataValue.md(md_table(reasons)),
            "users": raw["user_id"].n_unique() if raw.height else 0,
            "items": raw["item_id"].n_unique() if raw.height else 0,
        },
        check_results=checks,
    )
    yield dg.MaterializeResult(
        asset_key="ingestion_log",
        metadata=table_metadata(warehouse, "quality.ingestion_log", "run_id = $run", {"run": context.run.run_id}),
    )


def _volume_ratios(warehouse: Warehouse, per_day: pl.DataFrame, config: IngestionConfig) -> pl.DataFrame:
    """Reads the stored trailing partitions' counts; recsys.ingest_stats computes the ratios."""
    days = per_day.filter(pl.col("partition") != UNROUTABLE).sort("partition")
    if days.is_empty():
        return pl.DataFrame({"partition": [], "ratio": []}, schema={"partition": pl.Utf8, "ratio": pl.Float64})
    first = days["partition"][0]
    from_key = (pl.Series([first]).str.to_date() - timedelta(days=config.trailing_partitions)).dt.to_string("%Y-%m-%d")[0]
    stored = warehouse.query_file("analytics/trailing_volume", {"start_key": first, "from_key": from_key})
    return volume_ratios(stored, days, config.trailing_partitions)


CATALOG_CHECKS = {
    "items": dg.AssetCheckSpec("contract", asset="items", blocking=True, description="ERROR: item_id present, non-null, unique"),
    "users": dg.AssetCheckSpec("contract", asset="users", blocking=True, description="ERROR: user_id present, non-null, unique"),
}


def _catalog_asset(name: str, key: str, loader: str):
    @dg.asset(
        name=name,
        pool=DUCKDB_POOL,
        check_specs=[CATALOG_CHECKS[name]],
        group_name="ingestion",
        kinds={"duckdb", "polars"},
        description=f"raw.{name}: the dataset's {name} with their attributes.",
        retry_policy=IO_RETRY,  # reads the source's files (the ML-100K source may download)
        **catalog(f"raw.{name}"),
    )
    def _asset(context: dg.AssetExecutionContext, source: DatasetSource, warehouse: Warehouse, gx_validator: GreatExpectationsResource):
        with source_errors_are_final():
            frame = getattr(source.reader(), loader)()
        warehouse.write_table(f"raw.{name}", frame)
        outcome = gx_validator.validate(frame, expectations.catalog_contract(name, key))
        return dg.MaterializeResult(
            metadata={**table_metadata(warehouse, f"raw.{name}"), "rows": frame.height, "preview": md(frame.head(10))},
            check_results=[check_result(context, warehouse, name, "contract", outcome, SEV_ERROR, None)],
        )

    return _asset


items = _catalog_asset("items", "item_id", "items")
users = _catalog_asset("users", "user_id", "users")


def _days_of(keys: list[str], lo, hi) -> list[str]:
    return [k for k in keys if lo.isoformat() <= k <= hi.isoformat()]


def _load_lake_days(warehouse: Warehouse, con, engine: SqlEngine, params: dict, days: list[str]) -> int:
    """Within the caller's transaction: replaces staging.interactions' rows of [$start, $end] with the
    lake's day-partitions the Spark engine wrote; returns the rows loaded."""
    files = engine.lake.day_files("staging.interactions", days)
    if not files:
        warehouse.replace_window(con, "staging.interactions", pl.DataFrame(schema=INTERACTION_SCHEMA), params["start"], params["end"])
        return 0
    sql = load_sql("staging/interactions_from_lake")
    return warehouse.replace_window_from_query(con, "staging.interactions", sql, {**params, "files": files}, list(INTERACTION_SCHEMA))


CLEAN_CHECKS = [
    _spec("contract", "interactions", True, "ERROR: unique (user, item, ts, event); referenced items and users exist"),
]


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=DUCKDB_POOL,
    deps=["raw_interactions", items, users],
    check_specs=CLEAN_CHECKS,
    group_name="ingestion",
    kinds=engine_kinds("duckdb"),
    **catalog("staging.interactions"),
    description="staging.interactions: typed, bounded, de-duplicated events of the partition (sql/staging/interactions.sql).",
)
def interactions(context: dg.AssetExecutionContext, warehouse: Warehouse, gx_validator: GreatExpectationsResource, engine: SqlEngine):
    start, end, keys = window(context)
    n_raw = n_clean = 0
    columns = list(INTERACTION_SCHEMA)
    runs = day_runs(keys)
    if engine.kind == "spark":  # the same statement on Spark, lake to lake; DuckDB then loads the days below
        for lo, hi in runs:
            engine.spark_replace_days("staging/interactions", {"start": lo, "end": hi}, "staging.interactions", _days_of(keys, lo, hi))
    with warehouse.connect() as con:
        con.begin()
        for lo, hi in runs:
            params = {"start": lo, "end": hi}
            if engine.kind == "duckdb":  # typed, bounded, de-duplicated in DuckDB: the rows never leave the warehouse
                n_clean += warehouse.replace_window_from_query(
                    con, "staging.interactions", load_sql("staging/interactions"), params, columns
                )
            else:
                n_clean += _load_lake_days(warehouse, con, engine, params, _days_of(keys, lo, hi))
            n_raw += con.execute("SELECT count(*) FROM raw.interactions WHERE event_date BETWEEN $start AND $end", params).fetchone()[0]
        con.commit()
        days = {"start": start, "end": end, "days": keys}
        # only what the contract reads: the key and the referential column, joined in SQL
        checked = con.execute(load_sql("staging/interactions_check"), days).pl()
        event_types = con.execute(
            "SELECT event_type, count(*) AS len FROM staging.interactions WHERE event_date BETWEEN $start AND $end "
            "AND event_date IN (SELECT unnest(CAST($days AS DATE[]))) GROUP BY event_type ORDER BY len DESC, event_type",
            days,
        ).pl()
    partition_label = keys[0] if len(keys) == 1 else f"{keys[0]}...{keys[-1]}"
    outcome = gx_validator.validate(checked, expectations.interactions_contract())
    return dg.MaterializeResult(
        metadata={
            **table_metadata(warehouse, "staging.interactions", "list_contains($k, CAST(event_date AS VARCHAR))", {"k": keys}),
            "partitions": partition_label,
            "rows": n_clean,
            "duplicates_removed": n_raw - n_clean,
            "event_types": md(event_types),
        },
        check_results=[check_result(context, warehouse, "interactions", "contract", outcome, SEV_ERROR, partition_label)],
    )
