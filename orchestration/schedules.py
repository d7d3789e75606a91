"""Schedules, both created STOPPED (turn them on in the UI: Automation, or `dagster schedule start`).

- ``daily_ingestion_schedule``: ``build_schedule_from_partitioned_job`` on ``daily_ingestion``; at
  02:15 UTC each day it requests the partition of the day that just ended (a late-arriving day is a
  backfill, not a schedule concern). Past the dataset's last partition it requests nothing.
- ``weekly_retrain``: ``train_and_evaluate`` every Monday 04:00 UTC (``RECDAG_RETRAIN_CRON``),
  after the night's ingestion, for the newest rolling-origin cut-off partition (assets/partitions.py);
  in live mode the newest cut-off whose test window is fully ingested (``ready_cutoffs``).
  Live mode has no daily schedule: the landing sensor (orchestration/landing.py) requests the days.
"""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg

from assets.partitions import CUTOFF_WINDOW_DAYS, LIVE, cutoff_keys
from orchestration.jobs import ingest_job, train_and_evaluate_job
from resources import settings


def ready_cutoffs(instance: dg.DagsterInstance | None) -> list[str]:
    """Cut-off keys whose whole test window is ingested (live mode: days arrive over time; a
    closed dataset's cut-offs are all ready, and no instance is read)."""
    if not LIVE:
        return cutoff_keys()
    keys = cutoff_keys(instance)
    done = instance.get_materialized_partitions(dg.AssetKey("interactions"))
    return [k for k in keys if all(d in done for d in _window_days(k))]


def _window_days(cutoff: str) -> list[str]:
    first = date.fromisoformat(cutoff)
    return [(first + timedelta(days=k)).isoformat() for k in range(CUTOFF_WINDOW_DAYS)]


daily_ingestion_schedule = dg.build_schedule_from_partitioned_job(
    ingest_job,
    name="daily_ingestion_schedule",
    description="Ingest yesterday's day-partition at 02:15 UTC (raw events, catalogs, clean interactions, checks).",
    hour_of_day=2,
    minute_of_hour=15,
    default_status=dg.DefaultScheduleStatus.STOPPED,
)


@dg.schedule(
    name="weekly_retrain",
    job=train_and_evaluate_job,
    cron_schedule=settings.retrain_cron(),
    execution_timezone="UTC",
    description="Retrain and evaluate the newest rolling-origin cut-off, Mondays 04:00 UTC (after the night's ingestion).",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
def weekly_retrain(context: dg.ScheduleEvaluationContext):
    """One run for the newest cut-off partition: the model production would ship this week."""
    keys = ready_cutoffs(context.instance if LIVE else None)
    if not keys:
        return dg.SkipReason("no cut-off yet whose train, valid and test windows are all ingested")
    return dg.RunRequest(run_key=f"weekly_retrain:{keys[-1]}:{context.scheduled_execution_time:%Y-%m-%d}", partition_key=keys[-1])


# Live mode (landing:<dir>) has no fixed day range to schedule: the landing sensor requests the days.
SCHEDULES = [weekly_retrain] if LIVE else [daily_ingestion_schedule, weekly_retrain]
