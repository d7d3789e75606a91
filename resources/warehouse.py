"""The DuckDB analytics store: one file, ``$RECDAG_DATA_DIR/warehouse.duckdb``.

All writes go through this resource so that partition replacement is one transaction and SQL
comes from ``sql/`` with bound parameters. DuckDB allows one writer per file; the assets that write
share the ``duckdb_writer`` concurrency pool (orchestration/definitions.py).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import polars as pl
from pydantic import Field

from resources import settings


def load_sql(name: str) -> str:
    """Text of ``sql/<name>.sql`` (``name`` like ``staging/interactions``)."""
    path = settings.SQL_DIR / f"{name}.sql"
    if not path.exists():
        raise FileNotFoundError(f"SQL statement {path} does not exist")
    return path.read_text()


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Warehouse(dg.ConfigurableResource):
    """DuckDB warehouse file under the data dir."""

    data_dir: str = Field(default_factory=lambda: str(settings.data_dir()))
    lock_timeout_s: float = 120.0

    @property
    def path(self) -> Path:
        return Path(self.data_dir) / "warehouse.duckdb"

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if read_only and not self.path.exists():
            read_only = False
        deadline = time.monotonic() + self.lock_timeout_s
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
                break
            except duckdb.IOException as exc:  # another process holds the write lock
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        try:
            if not read_only:
                con.execute(load_sql("ddl/warehouse"))
            yield con
        finally:
            con.close()

    # --- reads -------------------------------------------------------------------------------
    def query(self, sql: str, params: dict[str, Any] | None = None) -> pl.DataFrame:
        with self.connect() as con:
            return con.execute(sql, params or {}).pl()

    def query_file(self, name: str, params: dict[str, Any] | None = None) -> pl.DataFrame:
        return self.query(load_sql(name), params)

    def table(self, name: str) -> pl.DataFrame:
        return self.query(f"SELECT * FROM {_ident(name)}")

    def table_exists(self, name: str) -> bool:
        schema, table = name.split(".")
        found = self.query(
            "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = $s AND table_name = $t",
            {"s": schema, "t": table},
        )
        return bool(found["n"][0])

    # --- writes ------------------------------------------------------------------------------
    def replace_window(
        self,
        con: duckdb.DuckDBPyConnection,
        table: str,
        frame: pl.DataFrame,
        start: date,
        end: date,
        date_column: str = "event_date",
    ) -> None:
        """Within the caller's transaction: delete ``table``'s rows in [start, end], insert ``frame``."""
        con.execute(f"DELETE FROM {_ident(table)} WHERE {date_column} BETWEEN $start AND $end", {"start": start, "end": end})
        if frame.height:
            con.register("_incoming", frame.to_arrow())
            cols = ", ".join(f'"{c}"' for c in frame.columns)
            con.execute(f"INSERT INTO {_ident(table)} ({cols}) SELECT {cols} FROM _incoming")
            con.unregister("_incoming")

    def write_table(self, name: str, frame: pl.DataFrame, con: duckdb.DuckDBPyConnection | None = None) -> None:
        """Create or replace ``schema.table`` with ``frame`` (atomic: CREATE OR REPLACE)."""
        with _maybe_connect(self, con) as c:
            schema = name.split(".")[0]
            c.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            c.register("_frame", frame.to_arrow())
            c.execute(f"CREATE OR REPLACE TABLE {_ident(name)} AS SELECT * FROM _frame")
            c.unregister("_frame")

    def append(self, name: str, frame: pl.DataFrame, con: duckdb.DuckDBPyConnection | None = None) -> None:
        if not frame.height:
            return
        with _maybe_connect(self, con) as c:
            c.register("_frame", frame.to_arrow())
            cols = ", ".join(f'"{col}"' for col in frame.columns)
            c.execute(f"INSERT INTO {_ident(name)} ({cols}) SELECT {cols} FROM _frame")
            c.unregister("_frame")

    def record_check(
        self,
        asset: str,
        check: str,
        partition: str | None,
        passed: bool,
        severity: str,
        details: dict[str, Any],
        run_id: str,
        con: duckdb.DuckDBPyConnection | None = None,
    ) -> None:
        row = pl.DataFrame(
            {
                "asset": [asset],
                "check": [check],
                "partition": [partition],
                "passed": [passed],
                "severity": [severity],
                "details": [json.dumps(details, default=str)],
                "run_id": [run_id],
                "evaluated_at": [utcnow()],
            }
        )
        with _maybe_connect(self, con) as c:
            c.register("_row", row.to_arrow())
            c.execute(
                'INSERT INTO quality.check_results SELECT asset, "check", "partition", passed, severity, '
                "CAST(details AS JSON), run_id, evaluated_at FROM _row"
            )
            c.unregister("_row")


@contextlib.contextmanager
def _maybe_connect(wh: Warehouse, con):
    if con is not None:
        yield con
    else:
        with wh.connect() as c:
            yield c


def _ident(name: str) -> str:
    parts = name.split(".")
    if not all(p.replace("_", "").isalnum() for p in parts):
        raise ValueError(f"not a plain table name: {name!r}")
    return ".".join(parts)
