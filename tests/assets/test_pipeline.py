"""The whole DAG in process on the small synthetic dataset: every stage lands in eval.metrics."""

import dagster as dg
import duckdb
import pytest

from assets.partitions import daily_partitions, latest_cutoff
from orchestration.definitions import all_assets, all_checks, build_resources
from orchestration.tags import partition_range_tags
from resources.datasets import DatasetSource
from resources.model_store import ModelStore
from resources.warehouse import Warehouse

pytestmark = pytest.mark.heavy(100)  # rough serial seconds of this module: scheduled first (tests/conftest.py)

FAST = {
    "candidates_two_tower": {"config": {"params": {"epochs": 1}}},
    "pi2i_scorer": {"config": {"params": {"epochs": 1, "depth": 100}}},
    "sequence_ranker": {"config": {"params": {"epochs": 3}}},
    "evaluation": {"config": {"n_boot": 100}},
}


def test_whole_pipeline_evaluates_every_stage(tmp_path):
    resources = {
        **build_resources(),
        "warehouse": Warehouse(data_dir=str(tmp_path)),
        "source": DatasetSource(dataset="synthetic:30000", data_dir=str(tmp_path)),
        "model_store": ModelStore(data_dir=str(tmp_path)),
    }
    keys = daily_partitions.get_partition_keys()
    instance = dg.DagsterInstance.ephemeral()
    ingest = dg.materialize(
        all_assets,
        selection=dg.AssetSelection.groups("ingestion"),
        resources=resources,
        instance=instance,
        tags=partition_range_tags(keys[0], keys[-1]),
    )
    assert ingest.success
    downstream = dg.materialize(
        [*all_assets, *all_checks],
        selection=dg.AssetSelection.assets("interactions").downstream(include_self=False),
        resources=resources,
        instance=instance,
        partition_key=latest_cutoff(),
        run_config={"ops": FAST},
    )
    assert downstream.success
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        stages = {r[0] for r in con.execute("SELECT DISTINCT stage FROM eval.metrics WHERE fold = 'test'").fetchall()}
        n_recs = con.execute("SELECT count(*) FROM serving.recommendations").fetchone()[0]
        selected = con.execute("SELECT count(*) FROM features.selected_features").fetchone()[0]
        ci_ok = con.execute("SELECT bool_and(ci_low <= value AND value <= ci_high) FROM eval.metrics WHERE ci_low IS NOT NULL").fetchone()[
            0
        ]
        registry = {r[0] for r in con.execute("SELECT name FROM models.registry").fetchall()}
    expected = {
        "pop",
        "itemcf",
        "swing",
        "als",
        "ease",
        "two_tower",
        "content",
        "tgh",
        "pi2i_index",
        "pi2i",
        "pool",
        "lgbm_ranker",
        "sequence_ranker",
    }
    assert expected <= stages
    assert n_recs > 0 and selected > 0 and ci_ok
    assert {"lgbm_ranker", "sequence_ranker", "pi2i_valid", "pi2i_test"} <= registry
    assert (tmp_path / "exports" / "recommendations.parquet").exists()
    # the HTML report, and the headline as a Dagster table (shown inline on the asset page) with its schema
    report = tmp_path / "exports" / "report.html"
    assert report.exists() and report.stat().st_size > 10_000
    html = report.read_text()
    assert "lgbm_ranker" in html and html.count("<img") >= 3 and "Holm" in html
    # the evaluation step also writes eval.last_paired_test (asset last_paired_test, assets/catalog.py)
    [materialization] = [m for m in downstream.asset_materializations_for_node("evaluation") if m.asset_key == dg.AssetKey("evaluation")]
    meta = materialization.metadata
    assert meta["dagster/table_name"].value == "eval.per_user" and meta["dagster/partition_row_count"].value > 0
    assert meta["report"].path == str(report)
    table = meta["headline"]
    columns = {c.name: c.type for c in table.schema.columns}
    assert columns["stage"] == "string" and columns["users"] == "int"
    assert all(columns[c] == "float" for c in ("ndcg@10", "ndcg 95% low", "ndcg 95% high", "recall@10", "hit_rate@10"))
    assert expected <= {r.data["stage"] for r in table.records}
    assert all(r.data["ndcg 95% low"] <= r.data["ndcg@10"] <= r.data["ndcg 95% high"] for r in table.records)
    paired = meta["paired_tests_holm"]  # the ranker chosen on valid against every other stage, Holm-adjusted
    assert {c.name: c.type for c in paired.schema.columns}["decided_95"] == "bool"
    assert expected - {r.data["stage"] for r in paired.records} <= {r.data["versus"] for r in paired.records}
    assert all(r.data["p_value"] <= r.data["p_holm"] <= 1 and r.data["decided_95"] == (r.data["p_holm"] < 0.05) for r in paired.records)

    # candidate_pool builds per block of users: rebuilt in blocks of 97 users (the synthetic log has a few
    # hundred per fold, so several blocks each; every block queries every channel, so 7 cost a minute),
    # both of its tables are the ones the default block wrote
    def pool_tables() -> dict:
        with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
            return {t: con.execute(f"SELECT * FROM candidates.{t} ORDER BY ALL").fetchall() for t in ("pool", "pool_ranked")}

    whole = pool_tables()
    assert len(whole["pool"]) > 1000
    rebuilt = dg.materialize(
        [*all_assets, *all_checks],
        selection=["candidate_pool"],
        resources=resources,
        instance=instance,
        partition_key=latest_cutoff(),
        run_config={"ops": {"candidate_pool": {"config": {"block_users": 97}}}},
    )
    assert rebuilt.success and pool_tables() == whole
