"""Jobs: daily ingestion (partitioned), train-and-evaluate, and the whole pipeline."""

from __future__ import annotations

import dagster as dg

ingest_job = dg.define_asset_job(
    "daily_ingestion",
    selection=dg.AssetSelection.groups("ingestion"),
    description="Ingest one day-partition (or a range, as one run): raw events, catalogs, cleaned interactions, their checks.",
)

train_and_evaluate_job = dg.define_asset_job(
    "train_and_evaluate",
    selection=dg.AssetSelection.assets("interactions").downstream(include_self=False),
    description="Everything downstream of the cleaned interactions: split, OutRank, candidates, PI2I, rankers, evaluation.",
)

whole_pipeline_job = dg.define_asset_job(
    "whole_pipeline",
    selection=dg.AssetSelection.all(),
    description="Ingestion and everything downstream (partitioned assets over the selected range).",
)

# Order in which `make run` executes the jobs.
PIPELINE_STAGES = ["daily_ingestion", "train_and_evaluate"]
JOBS = [ingest_job, train_and_evaluate_job, whole_pipeline_job]
