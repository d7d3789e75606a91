"""`python -m orchestration.run`: materialize the default pipeline as `make run` does.

Runs through the Dagster instance at $DAGSTER_HOME (so the UI shows every run afterwards): the
ingestion job over the dataset's whole partition range as one run (single-run backfill), then the
train-and-evaluate job.
"""

from __future__ import annotations

import argparse
import sys
import time

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from orchestration.definitions import defs
from orchestration.jobs import PIPELINE_STAGES


def run_job(name: str, instance: dg.DagsterInstance, partition_range: tuple[str, str] | None = None) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def(name)
    tags = {}
    if partition_range is not None:
        tags = {ASSET_PARTITION_RANGE_START_TAG: partition_range[0], ASSET_PARTITION_RANGE_END_TAG: partition_range[1]}
    started = time.monotonic()
    result = job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
    status = "succeeded" if result.success else "FAILED"
    print(f"[recdag] job {name} {status} in {time.monotonic() - started:.1f}s (run {result.run_id})", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stages", default=",".join(PIPELINE_STAGES), help="comma-separated jobs to run, in order")
    args = parser.parse_args(argv)
    from assets.partitions import daily_partitions

    keys = daily_partitions.get_partition_keys()
    instance = dg.DagsterInstance.get()
    for stage in args.stages.split(","):
        partitioned = stage == "daily_ingestion"
        result = run_job(stage, instance, (keys[0], keys[-1]) if partitioned else None)
        if not result.success:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
