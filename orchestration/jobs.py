"""Jobs: daily ingestion (partitioned), train-and-evaluate, and the whole pipeline."""

from __future__ import annotations

import dagster as dg

ingest_job = dg.define_asset_job(
    "daily_ingestion",
    selection=dg.AssetSelection.groups("ingestion"),
    description="Ingest one day-partition (or a range, as one run): raw events, catalogs, cleaned interactions, their checks.",
)

# Order in which `make run` executes the jobs.
PIPELINE_STAGES = ["daily_ingestion"]
JOBS = [ingest_job]
