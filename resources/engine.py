"""Where the data-parallel transforms run: DuckDB (the default) or Spark, from one SQL definition each.

The transforms are the files in sql/, written in DuckDB's dialect. ``RECDAG_ENGINE=duckdb`` runs them
inside the warehouse. ``RECDAG_ENGINE=spark`` runs the same file on Spark through Dagster's
``dagster-pyspark`` resource: SQLGlot transpiles it to Spark SQL (``$start`` becomes the named parameter
``:start``; ``raw.interactions`` becomes a temporary view over the lake's Parquet day-partitions), and
the result is written back to the lake, from where DuckDB loads the tables the UI, the checks and the
reports read (resources/lake.py, docs/scale-out.md).

API::

    engine = SqlEngine()                     # RECDAG_ENGINE, RECDAG_LAKE_DIR, RECDAG_SPARK_MASTER / _REMOTE
    engine.kind                              # "duckdb" | "spark"
    spark_sql = to_spark_sql(load_sql("staging/interactions"))    # the transpiled text, views named
    engine.spark_replace_days("staging/interactions", {"start": d0, "end": d1},
                              target="staging.interactions", days=["2017-11-25", ...])
    engine.spark_replace_table("staging/split_rolling", bounds, target="staging.split")
    frame = engine.query_frames("eval/per_user_metrics", {"eval.lists": recs, ...})   # over in-memory frames
    rows = engine.query_beside("features/outrank_rows", params, {"features.outrank_item_categories": cats}, warehouse)
    table = engine.table_beside("features/ranker_history", params, frames, warehouse, "features.ranker_history_valid")
    block = table.read_users(lo, hi); table.drop()              # read back per range of users
    rows = engine.per_user_metrics(recs, truth, ks, metrics)      # recsys.metrics.per_user_metrics' rows
    build = engine.index_source("cooc", channel.index_params, with_valid=False)  # None: build in process

pyspark, dagster-pyspark and SQLGlot come with the ``spark`` extra (requirements-spark.lock); the
DuckDB engine never imports them.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field, PrivateAttr

from recsys.channels.item_index import ItemIndex
from recsys.metrics import METRICS
from resources import settings
from resources.lake import PARTITION_COLUMN, Lake, is_local
from resources.warehouse import load_sql

VIEW_SEPARATOR = "__"  # raw.interactions is the Spark view raw__interactions
# The item indexes as statements (sql/index/<method>_neighbours.sql): per method, the builder's settings
# each statement takes as parameters (name in the builder -> statement parameter, default) and the ones
# it fixes at the builder's defaults; another value keeps the build in process. ``exact_ties`` is
# always what the statements do (ties at the depth cut decided by the index's order).
SQL_INDEXES = {
    "cooc": {
        "params": {"window_hours": ("window_us", 24.0), "max_items_per_user": ("max_items", 200)},
        "fixed": {"user_weighting": "log", "normalize": "cosine", "exact_ties": True},
    },
    "swing": {
        "params": {"alpha": ("alpha", 1.0), "max_items_per_user": ("max_items", 200), "max_users_per_item": ("max_users", 300)},
        "fixed": {"exact_ties": True},
    },
}
UNBOUNDED = 2**62  # the statement's "no window" / "no cap"


def _load_frames(con, frames: dict[str, pl.DataFrame]) -> None:
    """Each frame as the DuckDB table its key names (schema.table), on ``con``."""
    for table, frame in frames.items():
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {table.split('.')[0]}")
        con.register("_frame", frame.to_arrow())
        con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM _frame")
        con.unregister("_frame")


def view_name(table: str) -> str:
    return table.replace(".", VIEW_SEPARATOR)


def to_spark_sql(sql: str) -> tuple[str, list[str]]:
    """(Spark SQL text, the schema-qualified tables it reads) for a DuckDB-dialect statement.

    Every ``schema.table`` becomes the view ``schema__table`` (registered over the lake by the caller);
    CTE names are left alone. Parameters keep their names (``$start`` → ``:start``)."""
    import sqlglot
    from sqlglot import exp

    tree = sqlglot.parse_one(sql, read="duckdb")
    # DuckDB's xor(a, b) becomes Spark's a ^ b, which binds looser than * and %: SQLGlot 30 writes
    # xor(a, b) * c as a ^ b * c, so every xor that is an operand is parenthesised here
    for node in list(tree.find_all(exp.BitwiseXor)):
        if isinstance(node.parent, exp.Binary):
            node.replace(exp.Paren(this=node.copy()))
    tables: list[str] = []
    for table in tree.find_all(exp.Table):
        if table.args.get("db"):
            qualified = f"{table.db}.{table.name}"
            if qualified not in tables:
                tables.append(qualified)
            table.set("this", exp.to_identifier(view_name(qualified)))
            table.set("db", None)
    return tree.sql(dialect="spark"), tables


def spark_config(master: str, remote: str | None, overrides: dict[str, str]) -> dict[str, str]:
    """The session's Spark configuration: UTC, dynamic partition overwrite, microsecond Parquet
    timestamps, a small shuffle for local mode; ``overrides`` (the resource's ``spark_conf``) last."""
    conf = {
        "spark.app.name": "recdag",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.parquet.inferTimestampNTZ.enabled": "true",
    }
    if remote:  # the server owns its static settings (a Connect client cannot change them)
        conf["spark.remote"] = remote
    else:
        conf["spark.master"] = master
        conf["spark.ui.showConsoleProgress"] = "false"  # progress bars would interleave with the run's log lines
        if master.startswith("local"):
            conf |= {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "4", "spark.driver.memory": "2g"}
    return conf | overrides


class EngineTable:
    """A statement's rows kept where they were computed (``SqlEngine.table_beside``): a warehouse table, or
    the Parquet files of a lake result. ``read_users(lo, hi)`` reads the rows with lo <= user_id <= hi
    (DuckDB and polars' Parquet reader skip what the range excludes); ``drop`` removes a warehouse table."""

    def __init__(self, warehouse=None, table: str | None = None, files: list[str] | None = None):
        self.warehouse, self.table, self.files = warehouse, table, files

    def read_users(self, lo: int, hi: int) -> pl.DataFrame:
        if self.files is not None:
            return pl.scan_parquet(self.files).filter(pl.col("user_id").is_between(lo, hi)).collect()
        return self.warehouse.query(f"SELECT * FROM {self.table} WHERE user_id BETWEEN $lo AND $hi", {"lo": lo, "hi": hi})

    def drop(self) -> None:
        if self.files is None:
            with self.warehouse.connect() as con:
                con.execute(f"DROP TABLE IF EXISTS {self.table}")


class SqlEngine(dg.ConfigurableResource):
    """The engine switch: ``engine`` (default RECDAG_ENGINE), the lake root and the Spark session's
    settings. The Spark session starts on first use, never under the DuckDB engine."""

    engine: str = Field(default="", description="duckdb | spark; empty = RECDAG_ENGINE (default duckdb)")
    lake_dir: str = Field(default="", description="root of the Parquet day-partitions; empty = RECDAG_LAKE_DIR")
    spark_master: str = Field(default="", description="Spark master URL; empty = RECDAG_SPARK_MASTER (default local[2])")
    spark_remote: str = Field(default="", description="Spark Connect URL (sc://host:15002); empty = RECDAG_SPARK_REMOTE")
    spark_conf: dict[str, str] = Field(default_factory=dict, description="extra Spark settings, applied last")
    _pyspark: Any = PrivateAttr(default=None)

    @property
    def kind(self) -> str:
        if not self.engine:
            return settings.engine()
        if self.engine not in settings.ENGINES:
            raise ValueError(f"SqlEngine.engine={self.engine!r}: expected one of {', '.join(settings.ENGINES)}")
        return self.engine

    @property
    def lake(self) -> Lake:
        return Lake(self.lake_dir or settings.lake_dir())

    def pyspark(self):
        """Dagster's LazyPySparkResource for this engine's settings (the session starts when first asked for)."""
        if self._pyspark is None:
            try:
                from dagster_pyspark import LazyPySparkResource
            except ImportError as err:
                raise RuntimeError(
                    "RECDAG_ENGINE=spark needs the spark extra: run `make venv-spark` (pyspark, dagster-pyspark, sqlglot) "
                    "and a Java 17+ runtime (`make java`, or `sudo apt-get install -y default-jre-headless`)"
                ) from err
            conf = spark_config(self.spark_master or settings.spark_master(), self.spark_remote or settings.spark_remote(), self.spark_conf)
            self._pyspark = LazyPySparkResource(spark_config=conf)
        return self._pyspark

    @property
    def spark(self):
        return self.pyspark().spark_session

    def spark_view(self, table: str) -> None:
        """Registers the lake table ``table`` as the temporary view the transpiled SQL reads."""
        path = self.lake.table_path(table)
        try:
            frame = self.spark.read.parquet(path)
        except Exception as err:  # Spark's AnalysisException: PATH_NOT_FOUND, or an empty folder
            raise FileNotFoundError(
                f"lake table {table}: no Parquet day-partitions at {path} ({type(err).__name__}); "
                f"materialize its producing asset under RECDAG_ENGINE=spark first"
            ) from None
        frame.createOrReplaceTempView(view_name(table))

    def spark_query(self, sql_name: str, params: dict[str, Any]):
        """The Spark DataFrame of ``sql/<sql_name>.sql`` over the lake, ``params`` bound by name."""
        text, tables = to_spark_sql(load_sql(sql_name))
        for table in tables:
            self.spark_view(table)
        return self.spark.sql(text, args=params)

    def spark_replace_days(self, sql_name: str, params: dict[str, Any], target: str, days: list[str]) -> None:
        """Runs ``sql/<sql_name>.sql`` on Spark and replaces ``days`` of the lake table ``target`` with its
        rows, partitioned by event_date. The statement's own window (``$start``..``$end``) is what keeps
        its rows inside ``days``; Spark's dynamic partition overwrite replaces only the days it writes, so
        on a local lake the days are cleared first (a day that now has no rows keeps no old files)."""
        frame = self.spark_query(sql_name, params)
        if self.lake_is_local:
            self.lake.clear_days(target, days)
        frame.write.mode("overwrite").partitionBy(PARTITION_COLUMN).parquet(self.lake.table_path(target))

    def spark_replace_table(self, sql_name: str, params: dict[str, Any], target: str) -> None:
        """Runs ``sql/<sql_name>.sql`` on Spark and replaces the whole lake table ``target`` with its rows,
        partitioned by event_date."""
        frame = self.spark_query(sql_name, params)
        writer = frame.write.mode("overwrite").option("partitionOverwriteMode", "static")
        writer.partitionBy(PARTITION_COLUMN).parquet(self.lake.table_path(target))

    def query_frames(self, sql_name: str, frames: dict[str, pl.DataFrame], params: dict[str, Any] | None = None) -> pl.DataFrame:
        """``sql/<sql_name>.sql`` over in-memory ``frames`` (keyed by the schema.table names it reads), as
        polars: in an in-memory DuckDB, or on Spark after writing each frame to the lake (the exchange format)."""
        if self.kind == "duckdb":
            import duckdb

            with duckdb.connect() as con:
                _load_frames(con, frames)
                return con.execute(load_sql(sql_name), params or {}).pl()
        return self._spark_result(sql_name, params or {}, frames)

    def query_beside(self, sql_name: str, params: dict[str, Any], frames: dict[str, pl.DataFrame], warehouse) -> pl.DataFrame:
        """``sql/<sql_name>.sql`` where the data lies, with small in-memory ``frames`` (keyed by the schema.table
        names it reads) beside it, as polars: under duckdb in the warehouse, the frames as tables of one
        transaction that is rolled back (nothing stays, no other reader sees them); on Spark over the lake,
        the frames written to the lake first."""
        if self.kind == "duckdb":
            with warehouse.connect() as con:
                con.begin()
                try:
                    _load_frames(con, frames)
                    return con.execute(load_sql(sql_name), params).pl()
                finally:
                    con.rollback()
        return self._spark_result(sql_name, params, frames)

    def table_beside(self, sql_name: str, params: dict[str, Any], frames: dict[str, pl.DataFrame], warehouse, target: str) -> EngineTable:
        """``sql/<sql_name>.sql`` where the data lies, with in-memory ``frames`` beside it (keyed by the
        schema.table names it reads), its rows kept as a table to read back per range of users
        (``EngineTable.read_users``) and dropped afterwards: under duckdb the warehouse table ``target``,
        written in one transaction that loads the frames and drops them again before it commits; on Spark
        the lake table ``results.<file name>`` (``_spark_result``'s), the frames written to the lake first."""
        if self.kind == "duckdb":
            with warehouse.connect() as con:
                con.begin()
                _load_frames(con, frames)
                con.execute(f"CREATE OR REPLACE TABLE {target} AS {load_sql(sql_name)}", params)
                for table in frames:
                    con.execute(f"DROP TABLE {table}")
                con.commit()
            return EngineTable(warehouse=warehouse, table=target)
        return EngineTable(files=self._spark_result_files(sql_name, params, frames))

    def _spark_result(self, sql_name: str, params: dict[str, Any], frames: dict[str, pl.DataFrame]) -> pl.DataFrame:
        return pl.read_parquet(self._spark_result_files(sql_name, params, frames))

    def _spark_result_files(self, sql_name: str, params: dict[str, Any], frames: dict[str, pl.DataFrame]) -> list[str]:
        """The statement on Spark over the lake, ``frames`` written there first; the result is written to the
        lake table ``results.<file name>`` (e.g. results.outrank_rows) and its Parquet files returned, so a
        large result never passes through the Spark driver's memory (collecting 5.2M rows through a 2 GiB
        local driver ran out of heap, bench/bench_event_features.py)."""
        for table, frame in frames.items():
            self.lake.write_table(table, frame)
        result = f"results.{sql_name.rsplit('/', 1)[-1]}"
        self.spark_query(sql_name, params).write.mode("overwrite").parquet(self.lake.table_path(result))
        return self.lake.plain_files(result)

    def per_user_metrics(self, recs: pl.DataFrame, truth: pl.DataFrame, ks, metrics) -> pl.DataFrame:
        """recsys.metrics.per_user_metrics's rows (user_id, metric, k, value; same order), computed by
        sql/eval/per_user_metrics.sql on this engine. Ranks must be unique within a user's list."""
        ks = sorted({int(k) for k in ks})
        tied = recs.select("user_id", "rank").is_duplicated()
        if tied.any():
            example = recs.filter(tied).head(1).to_dicts()[0]
            raise ValueError(f"per_user_metrics: ranks must be unique within a user's list; repeated, e.g. {example}")
        unknown = [m for m in metrics if m not in METRICS]
        if unknown or not ks or ks[0] < 1:
            raise ValueError(f"per_user_metrics: metrics {list(metrics)} (supported {METRICS}), ks {ks} (positive)")
        frames = {
            "eval.lists": recs.select(pl.col("user_id").cast(pl.Int64), pl.col("item_id").cast(pl.Int64), pl.col("rank").cast(pl.Int64)),
            "eval.truth": truth.select(pl.col("user_id").cast(pl.Int64), pl.col("item_id").cast(pl.Int64)),
            "eval.ks": pl.DataFrame({"k": ks}, schema={"k": pl.Int64}),
            "eval.positions": pl.DataFrame({"pos": range(1, ks[-1] + 1)}, schema={"pos": pl.Int64}),
        }
        wide = self.query_frames("eval/per_user_metrics", frames).sort(["k", "user_id"])
        return pl.concat(
            [
                wide.select(
                    pl.col("user_id").cast(pl.Int64),
                    pl.lit(m).alias("metric"),
                    pl.col("k").cast(pl.Int32),
                    pl.col(m).cast(pl.Float64).alias("value"),
                )
                for m in metrics
            ]
        )

    def index_source(self, method: str, index_params: dict, with_valid: bool):
        """A stand-in for recsys.channels.item_index.build_item_index that builds the co-occurrence or
        Swing index with sql/index/<method>_neighbours.sql on Spark over the lake's staging.split (train,
        or train + valid with ``with_valid``), or None where no statement covers the channel's settings
        (another method, weights or normalisation): the channel then builds its index in process. The
        caller hands it only fits on the whole fold history, never on a sample of it."""
        spec = SQL_INDEXES.get(method)
        if self.kind != "spark" or spec is None:
            return None
        fixed = spec["fixed"]
        if any(k not in spec["params"] and (k not in fixed or v != fixed[k]) for k, v in index_params.items()):
            return None

        def build(history: pl.DataFrame, depth: int, method: str, *, items, **params) -> ItemIndex:
            sql_params = {"depth": depth, "with_valid": with_valid}
            for name, (param, default) in spec["params"].items():
                value = params.get(name, default)
                if name == "window_hours":
                    value = int(value * 3600e6) if value is not None else UNBOUNDED
                elif name.startswith("max_"):
                    value = value or UNBOUNDED
                sql_params[param] = value
            frame = pl.from_arrow(self.spark_query(f"index/{method}_neighbours", sql_params).toArrow())
            return ItemIndex.from_neighbours(frame, items, depth, method)

        return build

    @property
    def lake_is_local(self) -> bool:
        return is_local(self.lake.root)
