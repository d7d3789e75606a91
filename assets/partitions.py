"""Partitions: days on event_date (ingestion) and rolling-origin cut-offs (training and evaluation).

Two modes, chosen by the dataset spec (``RECDAG_DATASET``):

- **closed dataset** (``movielens-100k``, ``taobao:<csv>``, ``synthetic:N`` ...): the day range is
  the source's plausible bounds, read once at import; ``daily_partitions`` is a
  ``DailyPartitionsDefinition`` over it and ``cutoff_partitions`` a static list anchored on the
  last day (``recsys.backtest.cutoff_dates``).
- **live** (``landing:<dir>``): the log grows, so both are ``DynamicPartitionsDefinition``\\ s
  (``event_days`` and ``cutoffs``) whose keys the landing sensor adds (orchestration/landing.py)
  as files arrive. Live cut-offs sit on a fixed grid, every W days counted from 1970-01-01
  (``live_cutoffs``), so a key never moves when earlier or later days arrive.

A cut-off partition's key is the first day of its test window (recsys.backtest): train < key − W
<= valid < key <= test < key + W, W = ``CUTOFF_WINDOW_DAYS`` (RECDAG_CUTOFF_DAYS; default a tenth
of a closed dataset's span, ``LIVE_WINDOW_DAYS`` in live mode). The newest key is what `make run`
and the weekly retrain materialize; `make backtest` materializes the last N.
"""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg

from recsys.backtest import cutoff_dates
from resources import settings
from resources.datasets import dataset_bounds

LIVE = settings.dataset_spec().startswith("landing:")
LIVE_WINDOW_DAYS = 7
EPOCH_DAY = date(1970, 1, 1)


def default_window_days(start: date, end: date) -> int:
    """A tenth of the span, at least one day: the rolling counterpart of the old 10% test share."""
    return max(1, round(((end - start).days + 1) / 10))


def live_cutoffs(days: list[date], window_days: int) -> list[date]:
    """Cut-offs of a growing log: days T on the grid (T − 1970-01-01) % W == 0 with at least W
    days of train before the valid window (T − 2W >= first day) and a complete test window
    (T + W − 1 <= last day). Stable: new days only ever add keys."""
    if not days:
        return []
    first, last = min(days), max(days)
    earliest = first + timedelta(days=2 * window_days)
    offset = (-(earliest - EPOCH_DAY).days) % window_days
    out, cutoff = [], earliest + timedelta(days=offset)
    while cutoff + timedelta(days=window_days - 1) <= last:
        out.append(cutoff)
        cutoff += timedelta(days=window_days)
    return out


if LIVE:
    DATASET_START = DATASET_END = None
    daily_partitions: dg.PartitionsDefinition = dg.DynamicPartitionsDefinition(name="event_days")
    CUTOFF_WINDOW_DAYS = settings.cutoff_window_days() or LIVE_WINDOW_DAYS
    CUTOFFS: list[date] = []
    cutoff_partitions: dg.PartitionsDefinition = dg.DynamicPartitionsDefinition(name="cutoffs")
else:
    DATASET_START, DATASET_END = dataset_bounds(settings.dataset_spec(), str(settings.data_dir()))
    # end_date is exclusive in Dagster; the last event day is a partition of its own.
    daily_partitions = dg.DailyPartitionsDefinition(
        start_date=DATASET_START.isoformat(),
        end_date=(DATASET_END + timedelta(days=1)).isoformat(),
        fmt="%Y-%m-%d",
    )
    CUTOFF_WINDOW_DAYS = settings.cutoff_window_days() or default_window_days(DATASET_START, DATASET_END)
    CUTOFFS = cutoff_dates(DATASET_START, DATASET_END, CUTOFF_WINDOW_DAYS)
    cutoff_partitions = dg.StaticPartitionsDefinition([d.isoformat() for d in CUTOFFS])


def day_keys(instance: dg.DagsterInstance | None = None) -> list[str]:
    """Every day partition key, oldest first (live mode reads the instance's dynamic partitions)."""
    if LIVE:
        return sorted(daily_partitions.get_partition_keys(dynamic_partitions_store=_need(instance)))
    return daily_partitions.get_partition_keys()


def cutoff_keys(instance: dg.DagsterInstance | None = None) -> list[str]:
    """Every cut-off partition key, oldest first."""
    if LIVE:
        return sorted(cutoff_partitions.get_partition_keys(dynamic_partitions_store=_need(instance)))
    return cutoff_partitions.get_partition_keys()


def latest_cutoff(instance: dg.DagsterInstance | None = None) -> str:
    """The newest cut-off key; a clear error when the data is too short for train + valid + test."""
    keys = cutoff_keys(instance)
    if not keys:
        where = "the days landed so far" if LIVE else f"{DATASET_START} .. {DATASET_END}"
        raise ValueError(
            f"dataset {settings.dataset_spec()!r} spans {where}: too short for a train, a valid and a "
            f"test window of {CUTOFF_WINDOW_DAYS} days; set RECDAG_CUTOFF_DAYS to a smaller window"
        )
    return keys[-1]


def _need(instance: dg.DagsterInstance | None) -> dg.DagsterInstance:
    return instance if instance is not None else dg.DagsterInstance.get()


def day_runs(keys: list[str]) -> list[tuple[date, date]]:
    """Day keys grouped into runs of consecutive days, as inclusive (start, end) pairs, oldest first.

    A run of a dynamic partition set may hold days that are not consecutive (a late day next to
    new ones): each run of consecutive days is read and replaced on its own, so no day between
    them is touched."""
    days = sorted({date.fromisoformat(k) for k in keys})
    runs: list[tuple[date, date]] = []
    for day in days:
        if runs and day == runs[-1][1] + timedelta(days=1):
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def window(context: dg.AssetExecutionContext) -> tuple[date, date, list[str]]:
    """First and last day and the sorted partition keys of this run (one partition or a range)."""
    keys = sorted(context.partition_keys)
    return date.fromisoformat(keys[0]), date.fromisoformat(keys[-1]), keys
