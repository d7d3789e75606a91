"""The recdag code location (loaded by workspace.yaml and `dagster dev`)."""

from __future__ import annotations

import dagster as dg

from assets import candidates, evaluation, features, ingestion, pi2i, rankers, retrieval, split
from orchestration.jobs import JOBS
from orchestration.schedules import SCHEDULES
from orchestration.sensors import SENSORS
from resources.alerts import AlertSink
from resources.compute import ComputeResource
from resources.datasets import DatasetSource
from resources.gx import GreatExpectationsResource
from resources.model_store import ModelStore
from resources.warehouse import Warehouse

ASSET_MODULES = [ingestion, split, features, candidates, pi2i, retrieval, rankers, evaluation]


def build_resources() -> dict:
    return {
        "warehouse": Warehouse(),
        "source": DatasetSource(),
        "gx_validator": GreatExpectationsResource(),
        "compute": ComputeResource(),
        "model_store": ModelStore(),
        "alerts": AlertSink(),
    }


all_assets = dg.load_assets_from_modules(ASSET_MODULES)
all_checks = dg.load_asset_checks_from_modules(ASSET_MODULES)

defs = dg.Definitions(
    assets=all_assets,
    asset_checks=all_checks,
    jobs=JOBS,
    schedules=SCHEDULES,
    sensors=SENSORS,
    resources=build_resources(),
)
