"""Schedules, both created STOPPED (turn them on in the UI: Automation, or `dagster schedule start`).

- ``daily_ingestion_schedule``: ``build_schedule_from_partitioned_job`` on ``daily_ingestion``; at
  02:15 UTC each day it requests the partition of the day that just ended (a late-arriving day is a
  backfill, not a schedule concern). Past the dataset's last partition it requests nothing.
- ``weekly_retrain``: ``train_and_evaluate`` every Monday 04:00 UTC, after the night's ingestion,
  on all the clean interactions ingested so far.
"""

from __future__ import annotations

import dagster as dg

from orchestration.jobs import ingest_job, train_and_evaluate_job

daily_ingestion_schedule = dg.build_schedule_from_partitioned_job(
    ingest_job,
    name="daily_ingestion_schedule",
    description="Ingest yesterday's day-partition at 02:15 UTC (raw events, catalogs, clean interactions, checks).",
    hour_of_day=2,
    minute_of_hour=15,
    default_status=dg.DefaultScheduleStatus.STOPPED,
)

weekly_retrain = dg.ScheduleDefinition(
    name="weekly_retrain",
    job=train_and_evaluate_job,
    cron_schedule="0 4 * * 1",
    execution_timezone="UTC",
    description="Retrain and evaluate everything downstream of the clean interactions, Mondays 04:00 UTC.",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)

SCHEDULES = [daily_ingestion_schedule, weekly_retrain]
