"""`python parallel_support.py START END`: one ingestion run over days START..END on the multiprocess executor.

The code location's own executor is in-process (orchestration/definitions.py); this job is the same ingestion
group with ``dg.multiprocess_executor``, each step in its own process (forked from a forkserver that has the
code location imported, so a step does not pay the imports again). tests/orchestration/test_parallel_runs.py
starts two of these at once against one Dagster home and one data dir.
"""

from __future__ import annotations

import sys

import dagster as dg

from orchestration.definitions import all_assets, all_checks, build_resources
from orchestration.tags import partition_range_tags

RUN_CONFIG = {
    "execution": {
        "config": {"max_concurrent": 2, "start_method": {"forkserver": {"preload_modules": ["orchestration.definitions"]}}},
    },
    "loggers": {"console": {"config": {"log_level": "WARNING"}}},
}

ingestion_multiprocess = dg.define_asset_job(
    "ingestion_multiprocess", selection=dg.AssetSelection.groups("ingestion"), executor_def=dg.multiprocess_executor
)
defs = dg.Definitions(assets=all_assets, asset_checks=all_checks, jobs=[ingestion_multiprocess], resources=build_resources())


def ingestion_job() -> dg.JobDefinition:
    return defs.resolve_job_def("ingestion_multiprocess")


if __name__ == "__main__":
    start, end = sys.argv[1:3]
    with dg.DagsterInstance.get() as instance:
        result = dg.execute_job(dg.reconstructable(ingestion_job), instance, run_config=RUN_CONFIG, tags=partition_range_tags(start, end))
        print(f"run {result.run_id} {'succeeded' if result.success else 'FAILED'}", flush=True)
    sys.exit(0 if result.success else 1)
