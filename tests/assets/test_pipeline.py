"""The whole DAG in process on the small synthetic dataset: every stage lands in eval.metrics."""

import dagster as dg
import duckdb

from assets.partitions import daily_partitions, latest_cutoff
from orchestration.definitions import all_assets, all_checks, build_resources
from orchestration.tags import partition_range_tags
from resources.datasets import DatasetSource
from resources.model_store import ModelStore
from resources.warehouse import Warehouse

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
