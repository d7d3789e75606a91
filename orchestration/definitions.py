"""The recdag code location (loaded by workspace.yaml and `dagster dev`)."""

from __future__ import annotations

import dagster as dg

from assets import backtest, candidates, evaluation, features, final_stage, ingestion, pi2i, rankers, retrieval, serving, split
from assets.catalog import SHARED_TABLES
from orchestration.jobs import JOBS
from orchestration.landing import LANDING_SENSORS
from orchestration.recovery import stale_run_sensor
from orchestration.schedules import SCHEDULES
from orchestration.sensors import SENSORS
from resources.alerts import AlertSink
from resources.compute import ComputeResource
from resources.datasets import DatasetSource
from resources.engine import SqlEngine
from resources.gx import GreatExpectationsResource
from resources.model_store import ModelStore
from resources.settings import alert_webhook_url
from resources.warehouse import Warehouse

ASSET_MODULES = [ingestion, split, features, candidates, pi2i, retrieval, rankers, final_stage, serving, evaluation, backtest]


def build_resources() -> dict:
    return {
        "warehouse": Warehouse(),
        "source": DatasetSource(),
        "engine": SqlEngine(),
        "gx_validator": GreatExpectationsResource(),
        "compute": ComputeResource(),
        "model_store": ModelStore(),
        "alerts": alert_sink(),
    }


WEBHOOK_ENV = "RECDAG_ALERT_WEBHOOK"


def alert_sink() -> AlertSink:
    """The alert sink with its webhook read through ``dg.EnvVar``: the UI shows the variable's name, never the URL.

    Unset (or empty), there is no webhook: alerts go to quality.alerts and the log only. A ``dg.EnvVar`` of
    an unset variable fails the run's resource config, so it is used only when the variable is set."""
    return AlertSink(webhook_url=dg.EnvVar(WEBHOOK_ENV) if alert_webhook_url() else None)


all_assets = dg.load_assets_from_modules(ASSET_MODULES)
all_checks = dg.load_asset_checks_from_modules(ASSET_MODULES)

# Refreshes `split` (and so the models, when their jobs or the schedule run) after new partitions,
# only once upstream blocking checks passed. Off by default: turn on under Automation in the UI.
automation_sensor = dg.AutomationConditionSensorDefinition(
    "refresh_after_new_partitions",
    target=dg.AssetSelection.assets("split"),
    default_status=dg.DefaultSensorStatus.STOPPED,
    minimum_interval_seconds=60,
)

defs = dg.Definitions(
    assets=[*all_assets, *SHARED_TABLES],  # the shared tables: external specs (assets/catalog.py)
    asset_checks=all_checks,
    jobs=JOBS,
    schedules=SCHEDULES,
    sensors=[*SENSORS, *LANDING_SENSORS, automation_sensor, stale_run_sensor],
    # One process per run: a process per step costs ~20 s of imports each on 2 cores, and the
    # DuckDB pool serializes the steps anyway.
    executor=dg.in_process_executor,
    resources=build_resources(),
)
