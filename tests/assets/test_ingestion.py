"""Ingestion through Dagster, in process, on a small synthetic dataset (see tests/conftest.py)."""

from datetime import date

import dagster as dg
import duckdb
import pytest

from assets import ingestion
from assets.partitions import daily_partitions
from orchestration.tags import partition_range_tags
from recsys.synthetic import SyntheticConfig, SyntheticReader
from resources.datasets import DatasetSource
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
