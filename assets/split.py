"""split: train / valid / test by protocol (RECDAG_SPLIT: temporal, temporal_quantile, leave_last_out, files:<dir>).

The asset is partitioned by rolling-origin cut-off (assets/partitions.py). ``temporal`` (the
default) splits at the partition's cut-off T with windows of W days: train < T − W <= valid < T <=
test < T + W, later events excluded (recsys.backtest.rolling_split). ``temporal_quantile`` is the
single global cut at event quantiles (1 − valid_frac − test_frac, 1 − test_frac); it, leave_last_out
and files do not depend on the cut-off, so every cut-off partition gives the same split for them
(the cut-off is recorded, and `make run` materializes only the newest).

``temporal``, ``temporal_quantile`` and ``leave_last_out`` assign folds with one SQL statement each
(sql/staging/split_rolling.sql, split_quantile.sql, split_leave_last_out.sql) that the engine runs (resources/engine.py): in DuckDB, or under
``RECDAG_ENGINE=spark`` on Spark over the lake's staging.interactions, writing the lake's staging.split that
DuckDB then loads. Either way the Split equals recsys' in-memory one (tests/resources/test_engine.py).

``files:<dir>`` reads a RecBole benchmark folder (recsys.sources.recbole.open_benchmark_split):
malformed lines go to quality.quarantine (partition ``split:<fold>``) in the split's transaction, a
file with more than ``max_quarantine_share`` bad lines fails the asset naming it, the dataset label
is the folder's name, and a folder that ships ``<name>.item`` / ``<name>.user`` must agree with the
warehouse catalogue (raw.items / raw.users from RECDAG_DATASET).
"""

import json
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl

from assets.catalog import observe, results, table_spec
from assets.common import DUCKDB_POOL, engine_kinds
from assets.ingestion import interactions
from assets.metadata import md, md_table, table_metadata
from assets.partitions import CUTOFF_WINDOW_DAYS, cutoff_partitions
from recsys import split as splitting
from recsys.backtest import rolling_bounds, rolling_split, rolling_split_of
from recsys.schema import QUARANTINE_SCHEMA
from recsys.sources.recbole import SPLIT_PARTITION_PREFIX, BenchmarkSplit, open_benchmark_split
from resources import settings
from resources.engine import SqlEngine
from resources.warehouse import Warehouse, utcnow

FILES_PREFIX = "files:"


class SplitConfig(dg.Config):
    protocol: str = ""  # empty = RECDAG_SPLIT (default "temporal")
    window_days: int = 0  # temporal: test/valid window length in days; 0 = CUTOFF_WINDOW_DAYS (RECDAG_CUTOFF_DAYS)
    valid_frac: float = 0.1  # temporal_quantile only
    test_frac: float = 0.1  # temporal_quantile only
    max_quarantine_share: float = 0.01  # files protocol: a split file with a larger share of bad lines fails


def read_files_split(folder: Path, config: SplitConfig) -> tuple[splitting.Split, BenchmarkSplit]:
    """The ``files`` protocol's Split and the parsed folder (quarantine, counts, catalogue files)."""
    bench = open_benchmark_split(folder)
    bench.check_bad_share(config.max_quarantine_share)
    counts = bench.file_counts()
    split = splitting.files_split(
        bench.parts["train"].interactions,
        bench.parts["valid"].interactions,
        bench.parts["test"].interactions,
        source=str(folder),
        dataset=bench.label,
        split_name=bench.name,
        catalogue_files=[p.name for p in (bench.item_file, bench.user_file) if p is not None],
        files={r["fold"]: {k: r[k] for k in ("file", "n_read", "n_loaded", "n_quarantined")} for r in counts.iter_rows(named=True)},
    )
    return split, bench


def make_split(protocol: str, frame: pl.DataFrame, config: SplitConfig, cutoff: str | None = None) -> splitting.Split:
    if protocol == "temporal":
        if cutoff is None:
            raise ValueError("the temporal protocol needs a cut-off partition key (a date: the first day of the test window)")
        return rolling_split(frame, date.fromisoformat(cutoff), config.window_days or CUTOFF_WINDOW_DAYS)
    if protocol == "temporal_quantile":
        return splitting.temporal_split(frame, config.valid_frac, config.test_frac)
    if protocol == "leave_last_out":
        return splitting.leave_last_out_split(frame)
    if protocol.startswith(FILES_PREFIX):
        return read_files_split(Path(protocol[len(FILES_PREFIX) :]), config)[0]
    raise ValueError(f"unknown split protocol {protocol!r}; expected temporal, temporal_quantile, leave_last_out or files:<dir>")


# Protocols whose fold assignment is one SQL statement, run by the engine (resources/engine.py): DuckDB in
# the warehouse, Spark on the lake (temporal_quantile's two cut timestamps by sql/staging/split_ts_at.sql
# first). files reads its folder in process.
SQL_SPLITS = {
    "temporal": "staging/split_rolling",
    "temporal_quantile": "staging/split_quantile",
    "leave_last_out": "staging/split_leave_last_out",
}
LEAVE_LAST_OUT_MIN = 3


def sql_split(protocol: str, config: SplitConfig, cutoff: str | None, warehouse: Warehouse, engine: SqlEngine) -> splitting.Split:
    """The split of staging.interactions by ``SQL_SPLITS[protocol]`` on the engine; the same Split (rows,
    order and params) as ``make_split`` on the same interactions (tests/resources/test_engine.py)."""
    if protocol == "temporal":
        if cutoff is None:
            raise ValueError("the temporal protocol needs a cut-off partition key (a date: the first day of the test window)")
        day, window_days = date.fromisoformat(cutoff), config.window_days or CUTOFF_WINDOW_DAYS
        params = rolling_bounds(day, window_days)
    elif protocol == "temporal_quantile":
        n = int(warehouse.query("SELECT count(*) AS n FROM staging.interactions")["n"][0])
        if n == 0:
            raise ValueError("temporal_split: interactions frame is empty")
        positions = splitting.quantile_cut_positions(n, config.valid_frac, config.test_frac)
        params = {name: None if pos is None else _ts_at(pos, warehouse, engine) for name, pos in zip(("t1", "t2"), positions)}
    else:
        params = {"min_interactions": LEAVE_LAST_OUT_MIN}
    if engine.kind == "spark":
        engine.spark_replace_table(SQL_SPLITS[protocol], params, "staging.split")
        folded = warehouse.query_file("staging/split_from_lake", {"files": engine.lake.table_files("staging.split")})
    else:
        folded = warehouse.query_file(SQL_SPLITS[protocol], params)
    # the canonical event order of staging/split_input.sql (ts, seq; nulls last), whatever order the engine returned
    parts = splitting.parts_of(folded.sort(["ts", "seq"], nulls_last=True, maintain_order=True))
    if protocol == "temporal_quantile":
        return splitting.temporal_split_of(*parts, config.valid_frac, config.test_frac, params["t1"], params["t2"])
    if protocol == "temporal":
        n_future = warehouse.query("SELECT count(*) AS n FROM staging.interactions WHERE ts >= $t", {"t": params["test_end"]})["n"][0]
        return rolling_split_of(*parts, day, window_days, int(n_future))
    return splitting.leave_last_out_of(*parts, min_interactions=LEAVE_LAST_OUT_MIN)


def _ts_at(pos: int, warehouse: Warehouse, engine: SqlEngine):
    """The timestamp at sorted position ``pos`` of staging.interactions, on the engine."""
    if engine.kind == "spark":
        return engine.spark_query("staging/split_ts_at", {"pos": pos}).collect()[0][0]
    return warehouse.query_file("staging/split_ts_at", {"pos": pos})["ts"][0]


def _catalogue_ids(warehouse: Warehouse, table: str, key: str) -> pl.Series:
    if not warehouse.table_exists(table):
        return pl.Series(key, [], dtype=pl.Int64)
    return warehouse.query(f"SELECT DISTINCT {key} FROM {table}")[key]


# New partitions refresh the split only when nothing upstream is missing and every blocking check passed.
SPLIT_AUTOMATION = (
    dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing())
    & dg.AutomationCondition.all_deps_blocking_checks_passed()
)


# every cut-off reads all the clean interactions ingested so far (the split drops what lies after its windows)
ALL_INTERACTIONS = [dg.AssetDep(interactions, partition_mapping=dg.AllPartitionMapping())]


@dg.multi_asset(
    specs=[
        table_spec(
            "split",
            "staging.split",
            "staging.split: every interaction with its fold (train / valid / test).",
            deps=ALL_INTERACTIONS,
            automation_condition=SPLIT_AUTOMATION,
            kinds=engine_kinds("duckdb", "polars"),
        ),
        table_spec(
            "split_params",
            "staging.split_params",
            "staging.split_params: the split's protocol, windows and cut-off (one JSON row).",
            deps=ALL_INTERACTIONS,
            kinds={"duckdb"},
        ),
    ],
    can_subset=True,  # selecting either key runs the step, which writes both (catalog.results)
    pool=DUCKDB_POOL,
    group_name="split",
    partitions_def=cutoff_partitions,
)
def split(context: dg.AssetExecutionContext, config: SplitConfig, warehouse: Warehouse, engine: SqlEngine):
    protocol = config.protocol or settings.split_spec()
    bench = None
    if protocol.startswith(FILES_PREFIX):
        result, bench = read_files_split(Path(protocol[len(FILES_PREFIX) :]), config)
        bench.check_catalogue(_catalogue_ids(warehouse, "raw.items", "item_id"), _catalogue_ids(warehouse, "raw.users", "user_id"))
        quarantine = bench.quarantine()
    elif protocol in SQL_SPLITS:
        result = sql_split(protocol, config, context.partition_key, warehouse, engine)
        quarantine = pl.DataFrame(schema=QUARANTINE_SCHEMA)
    else:
        result = make_split(protocol, warehouse.query_file("staging/split_input"), config, context.partition_key)
        quarantine = pl.DataFrame(schema=QUARANTINE_SCHEMA)
    folded = pl.concat(
        [
            part.with_columns(pl.lit(name).alias("fold"))
            for name, part in (("train", result.train), ("valid", result.valid), ("test", result.test))
        ],
        how="vertical",
    )
    params = {**result.params, "protocol_spec": protocol, "cutoff_partition": context.partition_key}
    if engine.kind == "spark" and protocol not in SQL_SPLITS:
        engine.lake.replace_days("staging.split", folded)  # split in process: the Spark stages still read it from the lake
    with warehouse.connect() as con:
        con.begin()
        warehouse.write_table("staging.split", folded, con=con)
        warehouse.write_table("staging.split_params", pl.DataFrame({"params": [json.dumps(params, default=str)]}), con=con)
        # the split owns quality.quarantine's split:<fold> rows: replaced with every materialization
        con.execute('DELETE FROM quality.quarantine WHERE starts_with("partition", $p)', {"p": SPLIT_PARTITION_PREFIX})
        warehouse.append("quality.quarantine", quarantine.with_columns(pl.lit(utcnow()).alias("ingested_at")), con=con)
        con.commit()
    summary = (
        folded.group_by("fold")
        .agg(
            pl.len().alias("rows"),
            pl.col("user_id").n_unique().alias("users"),
            pl.col("item_id").n_unique().alias("items"),
            pl.col("ts").min().alias("from"),
            pl.col("ts").max().alias("to"),
        )
        .sort("from")
    )
    context.log.info(f"split {protocol}: {summary.to_dicts()}")
    metadata = {"protocol": protocol, "params": dg.MetadataValue.json(json.loads(json.dumps(params, default=str))), "folds": md(summary)}
    if bench is not None:
        counts = bench.file_counts()
        reasons = quarantine.group_by("partition", "reason").agg(pl.len().alias("lines"), pl.col("line_no").min().alias("first_line"))
        metadata |= {
            "dataset": bench.label,
            "files": md(counts),
            "n_read": int(counts["n_read"].sum()),
            "n_loaded": int(counts["n_loaded"].sum()),
            "n_quarantined": quarantine.height,
            "loaded_plus_quarantined_equals_read": bool((counts["n_loaded"] + counts["n_quarantined"] == counts["n_read"]).all()),
            "quarantine_reasons": dg.MetadataValue.md(md_table(reasons.sort("partition", "first_line"))),
        }
        context.log.info(f"split files {bench.directory}: {counts.to_dicts()}")
    observe(context, warehouse, "quality.quarantine")
    yield from results(
        context,
        dg.MaterializeResult(asset_key="split", metadata={**table_metadata(warehouse, "staging.split"), **metadata}),
        dg.MaterializeResult(asset_key="split_params", metadata=table_metadata(warehouse, "staging.split_params")),
    )
