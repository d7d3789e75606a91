"""What the in-process Dagster tests share: resources on a temporary data dir, ingesting every day, and
quick settings for the whole DAG."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from assets.partitions import daily_partitions
from orchestration.definitions import all_assets, build_resources
from orchestration.tags import partition_range_tags
from resources.datasets import DatasetSource
from resources.model_store import ModelStore
from resources.warehouse import Warehouse

# Small, quick settings for the DAG downstream of `interactions` on the test-wide synthetic log: one
# epoch for the torch models, a shallow PI2I scoring depth, fewer bootstrap draws.
FAST_OPS = {
    "candidates_two_tower": {"config": {"params": {"epochs": 1}}},
    "pi2i_scorer": {"config": {"params": {"epochs": 1, "depth": 100}}},
    "sequence_ranker": {"config": {"params": {"epochs": 3}}},
    "evaluation": {"config": {"n_boot": 100}},
}


def local_resources(data_dir: Path, dataset: str, **overrides) -> dict:
    """The code location's resources with the warehouse, source and model store under ``data_dir``."""
    return {
        **build_resources(),
        "warehouse": Warehouse(data_dir=str(data_dir)),
        "source": DatasetSource(dataset=dataset, data_dir=str(data_dir)),
        "model_store": ModelStore(data_dir=str(data_dir)),
        **overrides,
    }


def ingest_every_day(resources: dict, instance: dg.DagsterInstance) -> None:
    """The ingestion group over every day-partition, as one run (a single-run range backfill)."""
    days = daily_partitions.get_partition_keys()
    result = dg.materialize(
        all_assets,
        selection=dg.AssetSelection.groups("ingestion"),
        resources=resources,
        instance=instance,
        tags=partition_range_tags(days[0], days[-1]),
    )
    assert result.success
