"""Jobs: daily ingestion (daily partitions) and train-and-evaluate (rolling-origin cut-off partitions).

The two jobs are partitioned differently (days versus cut-offs), so one job cannot hold both; `make
run` runs ingestion over every day as one run, then train-and-evaluate on the newest cut-off.
Train-and-evaluate runs carry the ``recdag/cutoff_chain`` tag, which the instance limits to one run
at a time (orchestration/dagster.yaml): the chain's intermediate tables hold one cut-off at a time,
so a backfill over several cut-offs runs them one after another.
"""

from __future__ import annotations

import dagster as dg

CUTOFF_CHAIN_TAG = "recdag/cutoff_chain"

ingest_job = dg.define_asset_job(
    "daily_ingestion",
    selection=dg.AssetSelection.groups("ingestion"),
    description="Ingest one day-partition (or a range, as one run): raw events, catalogs, cleaned interactions, their checks.",
)

train_and_evaluate_job = dg.define_asset_job(
    "train_and_evaluate",
    selection=dg.AssetSelection.assets("interactions").downstream(include_self=False),
    description=(
        "Everything downstream of the cleaned interactions for one cut-off partition: split, OutRank, candidates, PI2I, "
        "rankers, evaluation, and the summary pooled over every evaluated cut-off."
    ),
    tags={CUTOFF_CHAIN_TAG: "writer"},
)

# Order in which `make run` executes the jobs.
PIPELINE_STAGES = ["daily_ingestion", "train_and_evaluate"]
JOBS = [ingest_job, train_and_evaluate_job]
