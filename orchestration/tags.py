"""Dagster run tags recdag reads or writes, by their documented string values.

Dagster exposes these names only from private modules (``dagster._core.storage.tags``); the strings
themselves are part of its public contract (run tags shown in the UI and accepted by the GraphQL
``launchRun`` and the CLI's ``--tags``), so recdag names them once here instead of importing private API.
"""

PARTITION_TAG = "dagster/partition"
PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"


def partition_range_tags(start: str, end: str) -> dict[str, str]:
    """Tags that make one run materialize the partition range ``start..end`` (single-run backfill)."""
    return {PARTITION_RANGE_START_TAG: start, PARTITION_RANGE_END_TAG: end}


# Groups the train_and_evaluate runs of one `make backtest` (one run per cut-off).
BACKTEST_TAG = "recdag/backtest"
