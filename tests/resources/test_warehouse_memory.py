"""RECDAG_DUCKDB_MEMORY_LIMIT bounds the warehouse's DuckDB (it spills past it); a bad value names the variable."""

from __future__ import annotations

import polars as pl
import pytest

from resources.warehouse import Warehouse


def test_memory_limit_applies_to_every_connection_and_a_bounded_sort_still_finishes(tmp_path, monkeypatch):
    monkeypatch.setenv("RECDAG_DUCKDB_MEMORY_LIMIT", "64MB")
    warehouse = Warehouse(data_dir=str(tmp_path))
    with warehouse.connect() as con:
        assert con.execute("SELECT current_setting('memory_limit')").fetchone()[0] in ("61.0 MiB", "61.0MiB")
        # a hash aggregate of 5M groups (hundreds of MB of state) inside a 64 MB limit: DuckDB spills to
        # <warehouse>.tmp instead of failing
        got = con.execute(
            "SELECT count(*), sum(n) FROM (SELECT i % 5000000 AS g, count(*) AS n FROM range(20000000) t(i) GROUP BY g)"
        ).fetchone()
    assert got == (5_000_000, 20_000_000)
    assert warehouse.query("SELECT current_setting('memory_limit') AS m")["m"][0] in ("61.0 MiB", "61.0MiB")


def test_a_malformed_memory_limit_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("RECDAG_DUCKDB_MEMORY_LIMIT", "80%")
    with pytest.raises(ValueError, match=r"RECDAG_DUCKDB_MEMORY_LIMIT='80%': expected a size such as 6GB"):
        Warehouse(data_dir=str(tmp_path)).query("SELECT 1")


def test_unset_keeps_duckdbs_default(tmp_path, monkeypatch):
    monkeypatch.delenv("RECDAG_DUCKDB_MEMORY_LIMIT", raising=False)
    limit = Warehouse(data_dir=str(tmp_path)).query("SELECT current_setting('memory_limit') AS m")["m"][0]
    assert isinstance(limit, str) and limit != "61.0 MiB"
    assert pl.Series([limit]).str.contains("GiB|MiB").all()
