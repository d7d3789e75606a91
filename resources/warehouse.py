"""The DuckDB analytics store: one file, ``$RECDAG_DATA_DIR/warehouse.duckdb``.

All writes go through this resource so that partition replacement is one transaction and SQL
comes from ``sql/`` with bound parameters.

Access under parallel runs (several runs, the multiprocess executor, sensors, `make recommend`):

- DuckDB lets one process open the file for writing, or any number for reading, never both. Reads
  (``query``, ``query_file``, ``table``, ``table_exists``, ``connect(read_only=True)``) open
  read-only connections; a writable one is opened only by ``connect()``.
- Every writable connection first takes the cross-process writer lock: ``fcntl.flock`` on
  ``warehouse.duckdb.lock`` next to the file, held until the connection closes. It serializes the
  writers of every run, executor and process, whatever Dagster pool their step sits in: the torch
  steps (``candidates_two_tower``, ``pi2i_*``, ``sequence_ranker``) keep the ``gpu`` pool for their
  training and take the lock only for their writes; the steps that are mostly DuckDB work stay in
  the ``duckdb_writer`` pool, which keeps them from queueing on the lock. Within a process the lock
  is re-entrant (a nested ``connect()`` in the same thread does not deadlock) and a read inside an
  open write connection of the same process reuses a writable connection (DuckDB refuses two
  configurations of one file in a process). The kernel drops the lock when a process dies.
- Opening waits, for the lock and for DuckDB's own file lock (a reader blocks a writer and the other
  way round), up to ``lock_timeout_s``, then raises ``duckdb.IOException`` ("... lock ...").
- The DDL (sql/ddl/warehouse.sql, idempotent) runs once per process and warehouse file (again if the
  file was replaced), under the writer lock, before the first connection of either kind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
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

    @property
    def lock_path(self) -> Path:
        return Path(self.data_dir) / "warehouse.duckdb.lock"

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the warehouse file; writable ones hold the cross-process writer lock (module docstring)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_s
        if not _ddl_is_current(self.path):
            with _writer_lock(self.lock_path, deadline):
                if not _ddl_is_current(self.path):
                    con = _open(self.path, False, deadline)
                    try:
                        con.execute(load_sql("ddl/warehouse"))
                    finally:
                        con.close()
                    _mark_ddl_done(self.path)
        if read_only and _writer_depth(self.lock_path):
            read_only = False  # this process writes the file right now: DuckDB allows one configuration per process
        with contextlib.ExitStack() as stack:
            if not read_only:
                stack.enter_context(_writer_lock(self.lock_path, deadline))
            con = _open(self.path, read_only, deadline)
            try:
                yield con
            finally:
                con.close()

    # --- reads (read-only connections) -------------------------------------------------------
    def query(self, sql: str, params: dict[str, Any] | None = None) -> pl.DataFrame:
        with self.connect(read_only=True) as con:
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

    def replace_window_from_query(
        self,
        con: duckdb.DuckDBPyConnection,
        table: str,
        select_sql: str,
        params: dict[str, Any],
        columns: list[str],
        date_column: str = "event_date",
    ) -> int:
        """Within the caller's transaction: delete ``table``'s rows in [$start, $end], insert the rows of
        ``select_sql`` (its ``columns``, bound with ``params``) without leaving DuckDB; returns the rows inserted."""
        con.execute(
            f"DELETE FROM {_ident(table)} WHERE {date_column} BETWEEN $start AND $end", {"start": params["start"], "end": params["end"]}
        )
        cols = ", ".join(f'"{c}"' for c in columns)
        body = select_sql.strip().rstrip(";")
        row = con.execute(f"INSERT INTO {_ident(table)} ({cols}) SELECT {cols} FROM (\n{body}\n)", params).fetchone()
        return int(row[0]) if row else 0

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


# --- process-wide state: the writer lock and the DDL done per warehouse file -------------------
_state_lock = threading.Lock()
_ddl_done: dict[str, tuple[int, int]] = {}  # warehouse path -> (st_dev, st_ino) of the file the DDL ran on
_writers: dict[str, _WriterLock] = {}  # lock path -> this process's hold on it


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _ddl_is_current(path: Path) -> bool:
    with _state_lock:
        done = _ddl_done.get(str(path))
    return done is not None and done == _file_id(path)


def _mark_ddl_done(path: Path) -> None:
    file_id = _file_id(path)
    if file_id is not None:
        with _state_lock:
            _ddl_done[str(path)] = file_id


def _open(path: Path, read_only: bool, deadline: float) -> duckdb.DuckDBPyConnection:
    """``duckdb.connect``, retried while another process holds DuckDB's own file lock (until ``deadline``)."""
    limit = settings.duckdb_memory_limit()
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            if limit:  # a setting of the database instance: every connection to the file shares it
                con.execute(f"SET memory_limit = '{limit}'")
            return con
        except duckdb.IOException as exc:  # another process has the file open in the other mode
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise
        except duckdb.ConnectionException as exc:  # another thread of this process has it open in the other mode
            if "different configuration" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.2)


class _WriterLock:
    """This process's hold on one writer-lock file: re-entrant per thread, ``flock`` across processes."""

    def __init__(self, path: Path):
        self.path = path
        self.rlock = threading.RLock()
        self.depth = 0
        self.fd: int | None = None


def _writer_depth(lock_path: Path) -> int:
    with _state_lock:
        holder = _writers.get(str(lock_path))
    return holder.depth if holder is not None else 0


@contextlib.contextmanager
def _writer_lock(lock_path: Path, deadline: float) -> Iterator[None]:
    with _state_lock:
        holder = _writers.setdefault(str(lock_path), _WriterLock(lock_path))
    if not holder.rlock.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
        raise duckdb.IOException(f"Could not set lock on {lock_path}: another thread of this process writes the warehouse")
    try:
        if holder.depth == 0:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        os.close(fd)
                        raise duckdb.IOException(
                            f"Could not set lock on {lock_path}: another process writes the warehouse (waited past lock_timeout_s)"
                        ) from None
                    time.sleep(0.2)
            holder.fd = fd
        holder.depth += 1
        try:
            yield
        finally:
            holder.depth -= 1
            if holder.depth == 0 and holder.fd is not None:
                fcntl.flock(holder.fd, fcntl.LOCK_UN)
                os.close(holder.fd)
                holder.fd = None
    finally:
        holder.rlock.release()


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
