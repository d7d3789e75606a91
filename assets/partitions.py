"""Partitions: daily on event_date (ingestion) and rolling-origin cut-offs (training and evaluation).

Both come from the configured dataset's bounds. A cut-off partition's key is the first day of its
test window (recsys.backtest): train < key − W <= valid < key <= test < key + W, W =
``CUTOFF_WINDOW_DAYS`` (RECDAG_CUTOFF_DAYS, default a tenth of the data's span in days). The newest
key is what `make run` and the weekly retrain materialize; `make backtest` materializes the last N.
"""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg

from recsys.backtest import cutoff_dates
from resources import settings
from resources.datasets import dataset_bounds

DATASET_START, DATASET_END = dataset_bounds(settings.dataset_spec(), str(settings.data_dir()))

# end_date is exclusive in Dagster; the last event day is a partition of its own.
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=DATASET_START.isoformat(),
    end_date=(DATASET_END + timedelta(days=1)).isoformat(),
    fmt="%Y-%m-%d",
)


def default_window_days(start: date, end: date) -> int:
    """A tenth of the span, at least one day: the rolling counterpart of the old 10% test share."""
    return max(1, round(((end - start).days + 1) / 10))


CUTOFF_WINDOW_DAYS = settings.cutoff_window_days() or default_window_days(DATASET_START, DATASET_END)
CUTOFFS = cutoff_dates(DATASET_START, DATASET_END, CUTOFF_WINDOW_DAYS)
cutoff_partitions = dg.StaticPartitionsDefinition([d.isoformat() for d in CUTOFFS])


def latest_cutoff() -> str:
    """The newest cut-off key; a clear error when the data is too short for train + valid + test."""
    if not CUTOFFS:
        raise ValueError(
            f"dataset {settings.dataset_spec()!r} spans {DATASET_START} .. {DATASET_END}: too short for a train, a valid and a "
            f"test window of {CUTOFF_WINDOW_DAYS} days; set RECDAG_CUTOFF_DAYS to a smaller window"
        )
    return CUTOFFS[-1].isoformat()


def window(context: dg.AssetExecutionContext) -> tuple[date, date, list[str]]:
    """Inclusive [start, end] days and the partition keys of this run (one partition or a range)."""
    time_window = context.partition_time_window
    start = time_window.start.date()
    end = (time_window.end - timedelta(days=1)).date()
    keys = list(context.partition_keys)
    return start, end, keys
