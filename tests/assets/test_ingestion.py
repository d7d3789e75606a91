"""Ingestion through Dagster, in process, on a small synthetic dataset (see tests/conftest.py)."""

from datetime import date

import dagster as dg
import duckdb
import polars as pl
import pytest

from assets import ingestion
from assets.partitions import daily_partitions
from orchestration.tags import partition_range_tags
from recsys.synthetic import SyntheticConfig, SyntheticReader
from resources.datasets import DatasetSource
from resources.engine import SqlEngine
from resources.gx import GreatExpectationsResource
from resources.warehouse import Warehouse

INGESTION_ASSETS = [ingestion.raw_interactions, ingestion.items, ingestion.users, ingestion.interactions]


class CorruptedSyntheticSource(DatasetSource):
    """The test dataset with a share of one day's lines rendered malformed."""

    corrupt_day: str = ""
    fraction: float = 0.3

    def reader(self):
        cfg = SyntheticConfig(n_interactions=30000, seed=0)
        return SyntheticReader(cfg, corrupt_days={date.fromisoformat(self.corrupt_day): self.fraction})


def _resources(tmp_path, source=None):
    return {
        "warehouse": Warehouse(data_dir=str(tmp_path)),
        "source": source or DatasetSource(dataset="synthetic:30000"),
        "gx_validator": GreatExpectationsResource(),
        "engine": SqlEngine(),
    }


def _rows_by_day(tmp_path, table):
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        return dict(con.execute(f"SELECT CAST(event_date AS VARCHAR), count(*) FROM {table} GROUP BY ALL").fetchall())


def test_definitions_load_with_every_stage():
    from orchestration.definitions import defs

    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert {"raw_interactions", "items", "users", "interactions", "split", "outrank_ranking", "selected_features"} <= keys
    assert {"daily_ingestion", "train_and_evaluate"} <= {j.name for j in repo.get_all_jobs()}
    assert len(daily_partitions.get_partition_keys()) == 30


def test_rematerializing_a_partition_replaces_exactly_its_rows(tmp_path):
    key = daily_partitions.get_partition_keys()[3]
    first = dg.materialize(INGESTION_ASSETS, partition_key=key, resources=_resources(tmp_path))
    assert first.success
    once = _rows_by_day(tmp_path, "raw.interactions")
    assert list(once) == [key] and once[key] > 0
    second = dg.materialize(INGESTION_ASSETS, partition_key=key, resources=_resources(tmp_path))
    assert second.success
    assert _rows_by_day(tmp_path, "raw.interactions") == once
    assert _rows_by_day(tmp_path, "staging.interactions") == once
    meta = second.asset_materializations_for_node("raw_interactions")[0].metadata
    assert meta["n_loaded"].value + meta["n_quarantined"].value == meta["n_read"].value


def test_range_backfill_is_one_run_and_lands_every_partition(tmp_path):
    keys = daily_partitions.get_partition_keys()[5:9]
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        INGESTION_ASSETS,
        resources=_resources(tmp_path),
        instance=instance,
        tags=partition_range_tags(keys[0], keys[-1]),
    )
    assert result.success
    assert sorted(_rows_by_day(tmp_path, "raw.interactions")) == keys
    assert len(instance.get_runs()) == 1
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["contract"] and checks["quarantine_share"]


def test_corrupted_partition_fails_its_blocking_check_and_stops_downstream(tmp_path):
    key = daily_partitions.get_partition_keys()[2]
    source = CorruptedSyntheticSource(dataset="synthetic:30000", corrupt_day=key, fraction=0.3)
    result = dg.materialize(INGESTION_ASSETS, partition_key=key, resources=_resources(tmp_path, source), raise_on_error=False)
    evaluations = {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}
    assert not evaluations[("raw_interactions", "quarantine_share")].passed
    assert ("interactions", "contract") not in evaluations  # the downstream step never ran
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "raw_interactions" in materialized and "interactions" not in materialized
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        reasons = con.execute("SELECT reason FROM quality.quarantine WHERE \"partition\" IN ($k, 'unroutable')", {"k": key}).fetchall()
        n_read, n_loaded, n_quarantined = con.execute(
            "SELECT sum(n_read), sum(n_loaded), sum(n_quarantined) FROM quality.ingestion_log"
        ).fetchone()
        failed = con.execute("SELECT count(*) FROM quality.check_results WHERE \"check\" = 'quarantine_share' AND NOT passed").fetchone()[0]
    assert len(reasons) == n_quarantined > 0
    assert n_loaded + n_quarantined == n_read
    assert failed == 1
    assert any("column count" in r[0] for r in reasons) and any("behavior_type" in r[0] for r in reasons)


def test_missing_local_source_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "ml-100k"
    source = DatasetSource(dataset=f"movielens:{missing}", data_dir=str(tmp_path))
    with pytest.raises(Exception, match="nowhere"):
        source.reader()


class StrayStampsSource(DatasetSource):
    """The first days of the test dataset as a Taobao CSV with a handful of implausible timestamps."""

    csv: str = ""

    def reader(self):
        from pathlib import Path

        from recsys.sources.taobao import TaobaoReader

        return TaobaoReader(Path(self.csv), Path(self.data_dir) / "cache")


class DropOneItemSource(DatasetSource):
    """The test dataset whose item catalogue lacks one item that events reference."""

    missing_item: int = 0

    def reader(self):
        inner = super().reader()
        missing = self.missing_item

        class Reader:
            name = inner.name
            date_bounds, read_window, users = inner.date_bounds, inner.read_window, inner.users

            def items(self):
                return inner.items().filter(pl.col("item_id") != missing)

        return Reader()


def test_stray_timestamps_are_quarantined_without_failing_the_run(tmp_path):
    from orchestration.replay import day_lines

    keys = daily_partitions.get_partition_keys()[:3]
    reader = SyntheticReader(SyntheticConfig(n_interactions=30000, seed=0))
    categories = reader.items().select("item_id", "category_id")
    lines = [
        line
        for k in keys
        for line in day_lines(reader.read_window(date.fromisoformat(k), date.fromisoformat(k)).interactions, categories)[1]
    ]
    stray = ["1,1,0,pv,0", "2,2,0,pv,4102444800", "3,3,0,pv,-7", "4,4,0,pv,1511568000000", "5,5,0,pv,2145916800"]
    csv = tmp_path / "log.csv"
    csv.write_text("\n".join(lines + stray) + "\n")
    source = StrayStampsSource(dataset=f"taobao:{csv}", data_dir=str(tmp_path), csv=str(csv))
    assert [d.isoformat() for d in source.reader().date_bounds()] == [keys[0], keys[-1]]  # not stretched to 1970 or 2038
    result = dg.materialize(INGESTION_ASSETS, resources=_resources(tmp_path, source), tags=partition_range_tags(keys[0], keys[-1]))
    assert result.success  # 5 stray lines of thousands: the unroutable share is of the run's lines, under the limit
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute('SELECT "partition", reason FROM quality.quarantine ORDER BY line_no').fetchall()
        loaded = con.execute("SELECT count(*) FROM raw.interactions").fetchone()[0]
    assert len(rows) == len(stray) and {p for p, _ in rows} == {"unroutable"}
    assert all(reason.startswith("timestamp_out_of_range") for _, reason in rows)
    assert loaded + len(rows) == len(lines) + len(stray)


def test_unknown_item_fails_the_contract_and_names_it(tmp_path):
    key = daily_partitions.get_partition_keys()[1]
    day = SyntheticReader(SyntheticConfig(n_interactions=30000, seed=0)).read_window(date.fromisoformat(key), date.fromisoformat(key))
    missing = int(day.interactions["item_id"][0])
    source = DropOneItemSource(dataset="synthetic:30000", missing_item=missing)
    result = dg.materialize(INGESTION_ASSETS, partition_key=key, resources=_resources(tmp_path, source), raise_on_error=False)
    (contract,) = [e for e in result.get_asset_check_evaluations() if e.asset_key.to_user_string() == "interactions"]
    assert not contract.passed
    assert f"item_id {missing}" in contract.metadata["expectations"].value
