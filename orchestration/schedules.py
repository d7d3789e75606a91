"""Schedules, both created STOPPED (turn them on in the UI: Automation, or `dagster schedule start`).

- ``daily_ingestion_schedule``: ``build_schedule_from_partitioned_job`` on ``daily_ingestion``; at
  02:15 UTC each day it requests the partition of the day that just ended (a late-arriving day is a
  backfill, not a schedule concern). Past the dataset's last partition it requests nothing.
- ``weekly_retrain``: ``train_and_evaluate`` every Monday 04:00 UTC, after the night's ingestion,
  for the newest rolling-origin cut-off partition (assets/partitions.py).
"""

from __future__ import annotations

import dagster as dg

from assets.partitions import cutoff_partitions
from orchestration.jobs import ingest_job, train_and_evaluate_job

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
    cron_schedule="0 4 * * 1",
    execution_timezone="UTC",
    description="Retrain and evaluate the newest rolling-origin cut-off, Mondays 04:00 UTC (after the night's ingestion).",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
def weekly_retrain(context: dg.ScheduleEvaluationContext):
    """One run for the newest cut-off partition: the model production would ship this week."""
    keys = cutoff_partitions.get_partition_keys()
    if not keys:
        return dg.SkipReason("the data is too short for a train, a valid and a test window: no cut-off yet")
    return dg.RunRequest(run_key=f"weekly_retrain:{keys[-1]}:{context.scheduled_execution_time:%Y-%m-%d}", partition_key=keys[-1])


SCHEDULES = [daily_ingestion_schedule, weekly_retrain]
