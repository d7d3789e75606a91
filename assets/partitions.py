"""Daily partitions on event_date whose bounds come from the configured dataset."""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg

from resources import settings
from resources.datasets import dataset_bounds

DATASET_START, DATASET_END = dataset_bounds(settings.dataset_spec(), str(settings.data_dir()))

# end_date is exclusive in Dagster; the last event day is a partition of its own.
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=DATASET_START.isoformat(),
    end_date=(DATASET_END + timedelta(days=1)).isoformat(),
    fmt="%Y-%m-%d",
)


def window(context: dg.AssetExecutionContext) -> tuple[date, date, list[str]]:
    """Inclusive [start, end] days and the partition keys of this run (one partition or a range)."""
    time_window = context.partition_time_window
    start = time_window.start.date()
    end = (time_window.end - timedelta(days=1)).date()
    keys = list(context.partition_keys)
    return start, end, keys
