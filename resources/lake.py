"""The lake: Parquet day-partitions on a filesystem path, the format the engines exchange between stages.

Layout (hive-style, so DuckDB's ``read_parquet(..., hive_partitioning = true)`` and Spark's partition
discovery read the same files)::

    <RECDAG_LAKE_DIR>/<schema>/<table>/event_date=YYYY-MM-DD/part-*.parquet

``event_date`` lives in the directory name only, never inside the files. A stage replaces the days it
owns: every file of those days is removed before the new ones are written, so a re-materialized day
holds exactly its new rows (also when it now has none).

This module writes with polars on a local path. On object storage the same layout is written by Spark
(resources/engine.py); docs/scale-out.md says how the path maps onto a bucket.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import polars as pl

PARTITION_COLUMN = "event_date"


def is_local(path: str) -> bool:
    """True for a plain filesystem path (or ``file:`` URI); false for ``s3a://``, ``gs://``, ``abfss://`` …"""
    return "://" not in path or path.startswith("file://")


def _local(path: str) -> Path:
    return Path(path[len("file://") :] if path.startswith("file://") else path)


@dataclass(frozen=True)
class Lake:
    root: str

    def table_path(self, table: str) -> str:
        """``raw.interactions`` → ``<root>/raw/interactions``."""
        schema, _, name = table.partition(".")
        if not schema or not name:
            raise ValueError(f"lake table {table!r}: expected schema.table, e.g. raw.interactions")
        return f"{self.root.rstrip('/')}/{schema}/{name}"

    def day_path(self, table: str, day: str) -> str:
        return f"{self.table_path(table)}/{PARTITION_COLUMN}={day}"

    def _local_root(self, what: str) -> None:
        """An object-store lake (s3a://, gs://, ...) is read and written by Spark only: the DuckDB / polars side of
        this module uses local file calls, so it refuses such a root by name instead of finding no files."""
        if not is_local(self.root):
            raise ValueError(
                f"lake {self.root}: {what} needs a filesystem path (a local or shared volume); "
                "an object-store lake is not supported on the DuckDB side yet (docs/scale-out.md)"
            )

    def clear_days(self, table: str, days: list[str]) -> None:
        """Removes every file of ``days`` of ``table`` (a local lake; Spark replaces remote days itself)."""
        self._local_root(f"clearing days of {table}")
        for day in days:
            shutil.rmtree(_local(self.day_path(table, day)), ignore_errors=True)

    def write_days(self, table: str, frame: pl.DataFrame, days: list[str]) -> int:
        """Replaces ``days`` of ``table`` with ``frame``'s rows of those days (one file per day); rows dated
        outside ``days`` are an error, not dropped. Returns the rows written."""
        self._local_root(f"writing {table}")
        if PARTITION_COLUMN not in frame.columns:
            raise ValueError(f"lake table {table}: the frame has no {PARTITION_COLUMN} column ({frame.columns})")
        dated = frame.with_columns(pl.col(PARTITION_COLUMN).cast(pl.Date).dt.to_string("%Y-%m-%d").alias("_day"))
        stray = dated.filter(~pl.col("_day").is_in(days))
        if stray.height:
            raise ValueError(f"lake table {table}: {stray.height} rows dated outside the days written, e.g. {stray['_day'][0]}")
        self.clear_days(table, days)
        for (day,), part in dated.partition_by("_day", as_dict=True).items():
            target = _local(self.day_path(table, str(day)))
            target.mkdir(parents=True, exist_ok=True)
            part.drop("_day", PARTITION_COLUMN).write_parquet(target / "part-0.parquet")
        return frame.height

    def replace_days(self, table: str, frame: pl.DataFrame) -> int:
        """Replaces the whole day-partitioned ``table`` with ``frame`` (every day it has; days it lacks are
        removed). Returns the rows written."""
        self._local_root(f"writing {table}")
        shutil.rmtree(_local(self.table_path(table)), ignore_errors=True)
        if PARTITION_COLUMN not in frame.columns:
            raise ValueError(f"lake table {table}: the frame has no {PARTITION_COLUMN} column ({frame.columns})")
        days = frame[PARTITION_COLUMN].cast(pl.Date).unique().drop_nulls().dt.to_string("%Y-%m-%d").to_list()
        return self.write_days(table, frame, days)

    def write_table(self, table: str, frame: pl.DataFrame) -> str:
        """Replaces the unpartitioned lake table ``table`` with ``frame`` (one Parquet file); returns its folder."""
        self._local_root(f"writing {table}")
        folder = _local(self.table_path(table))
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        frame.write_parquet(folder / "part-0.parquet")
        return str(folder)

    def day_files(self, table: str, days: list[str]) -> list[str]:
        """The Parquet files of ``days`` of ``table`` on a local lake, sorted (none for a day without rows)."""
        self._local_root(f"listing the files of {table}")
        files: list[str] = []
        for day in days:
            files += sorted(str(p) for p in _local(self.day_path(table, day)).glob("*.parquet"))
        return files

    def plain_files(self, table: str) -> list[str]:
        """The Parquet files of the unpartitioned ``table`` on a local lake, sorted (Spark's part files or write_table's)."""
        self._local_root(f"listing the files of {table}")
        files = sorted(str(p) for p in _local(self.table_path(table)).glob("*.parquet"))
        if not files:
            raise FileNotFoundError(f"lake table {table}: no Parquet files at {self.table_path(table)}")
        return files

    def table_files(self, table: str) -> list[str]:
        """Every Parquet file of ``table`` on a local lake, sorted; an error naming the path when there is none."""
        self._local_root(f"listing the files of {table}")
        files = sorted(str(p) for p in _local(self.table_path(table)).glob(f"{PARTITION_COLUMN}=*/*.parquet"))
        if not files:
            raise FileNotFoundError(f"lake table {table}: no Parquet day-partitions at {self.table_path(table)}")
        return files
