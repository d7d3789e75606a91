"""The catalog: every DuckDB table a person queries is an asset, with owners, a layer tag and its table name.

One place for the mapping (``catalog``). The layer is the table's schema (raw, staging, features,
candidates, models, serving, quality; schema ``eval`` is the ``evaluation`` layer). The owner is
``team:recsys``, except the data-quality tables (schema ``quality`` and OutRank's
``features.quality_report``): ``team:data-platform``. Every asset and spec carries ``owners=``,
``tags={"layer": ...}`` and ``dagster/table_name`` in its definition metadata; each materialization
adds the table's ``dagster/row_count`` and ``dagster/column_schema`` read from DuckDB
(assets.metadata.table_metadata).

How a table becomes an asset:

- A table written by one step is an asset of that step. A step that writes several tables in one
  transaction is a multi-asset with one ``AssetSpec`` per table (``table_spec``); its main output keeps
  the asset key it had, so deps, jobs and selections are unchanged:

  ============================  ======================================================================
  step (main asset key)         tables (extra asset keys)
  ============================  ======================================================================
  raw_interactions              raw.interactions, quality.ingestion_log (``ingestion_log``)
  split                         staging.split, staging.split_params (``split_params``)
  outrank_ranking               features.outrank_scores, features.quality_report
                                (``feature_quality_report``), features.redundant_pairs (``redundant_pairs``)
  pi2i_index                    candidates.pi2i_index, candidates.pi2i_depth_curve (``pi2i_depth_curve``)
  candidate_pool                candidates.pool, candidates.pool_ranked (``candidates_pool_ranked``)
  ranker_dataset                features.ranker_valid, features.ranker_test (``ranker_test_dataset``)
  evaluation                    eval.per_user, eval.last_paired_test (``last_paired_test``),
                                eval.user_sample (``eval_user_sample``)
  ============================  ======================================================================

  These multi-assets (not raw_interactions, whose day ranges run as one) can be subset, so selecting
  one key (``materialize(selection=["split"])``, a test, the UI) keeps working: the step still writes
  all its tables in its one transaction, and ``results`` records the tables that were not selected as
  materializations of this run too, so the catalog never shows a table older than it is.
- A table written by several steps, or by resources and sensors, cannot be one step's output: it is an
  external ``AssetSpec`` here (``SHARED_TABLES``, group ``shared_tables``):
  quality.quarantine (raw_interactions' day partitions, split's ``split:<fold>`` rows),
  quality.check_results (every asset check, through Warehouse.record_check),
  quality.alerts (the alert sensors, through resources.alerts.AlertSink),
  eval.metrics (appended by retrieval_evaluation, evaluation and evaluation_summary),
  models.registry (resources.model_store: pi2i_scorer and the rankers register, recommendations promotes).
  Dagster never materializes them. The asset steps that write quality.quarantine, eval.metrics and
  models.registry record an observation of the table (``observe``: row count and schema), so their pages
  show how they grow; quality.check_results and quality.alerts are written from check helpers and
  sensors and keep their definition metadata only. They have no lineage edges on purpose: an external
  asset downstream of the pipeline would fall into the jobs' ``downstream()`` selections, which may
  hold only executable assets.

Also here, so one module says what the catalog promises: the freshness policy of the serving tables
(``SERVING_FRESHNESS``) and the retry policy of the steps that touch files or the network (``IO_RETRY``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import dagster as dg

from assets.metadata import table_metadata

RECSYS = "team:recsys"
DATA_PLATFORM = "team:data-platform"

LAYER_OF_SCHEMA = {
    "raw": "raw",
    "staging": "staging",
    "features": "features",
    "candidates": "candidates",
    "models": "models",
    "serving": "serving",
    "quality": "quality",
    "eval": "evaluation",
}
DATA_QUALITY_TABLES = frozenset({"features.quality_report"})

# The serving tables (recommendations, evaluation and its pooled summary) are rebuilt by the weekly
# retrain (Mondays, orchestration/schedules.py): older than 7 days is a warning, than 8 a failure.
SERVING_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(days=8), warn_window=timedelta(days=7))

# Source files, the ML-100K download, export files: transient failures (a file mid-copy, a network
# hiccup, a full disk freed by a cleanup) are retried twice, 10 s then 20 s later. A re-run is safe:
# every write replaces its window or table in one transaction.
IO_RETRY = dg.RetryPolicy(max_retries=2, delay=10, backoff=dg.Backoff.EXPONENTIAL)


def layer_of(table: str) -> str:
    return LAYER_OF_SCHEMA[table.split(".")[0]]


def owners_of(table: str) -> list[str]:
    return [DATA_PLATFORM] if table.startswith("quality.") or table in DATA_QUALITY_TABLES else [RECSYS]


def catalog(table: str | None = None, *, layer: str | None = None) -> dict:
    """``owners``, ``tags`` and ``metadata`` (``dagster/table_name``) of the asset or spec that writes
    ``table``; for an asset with no table of its own (a model, a report of rows in a shared table) pass
    its ``layer`` instead."""
    if table is None:
        if layer is None:
            raise ValueError("an asset without a table needs a layer")
        return {"owners": [RECSYS], "tags": {"layer": layer}}
    return {"owners": owners_of(table), "tags": {"layer": layer or layer_of(table)}, "metadata": {"dagster/table_name": table}}


def table_spec(key: str, table: str, description: str, **kwargs) -> dg.AssetSpec:
    """The ``AssetSpec`` of ``table`` written by a multi-asset step (or shared: ``SHARED_TABLES``)."""
    return dg.AssetSpec(key, description=description, **catalog(table), **kwargs)


def _shared(key: str, table: str, description: str) -> dg.AssetSpec:
    return table_spec(key, table, description, group_name="shared_tables", kinds={"duckdb"})


SHARED_TABLES = [
    _shared(
        "quality_quarantine",
        "quality.quarantine",
        "Lines that could not be loaded, with the reason: raw_interactions replaces its days' rows, split (files protocol) its "
        "split:<fold> rows. Loaded + quarantined = read.",
    ),
    _shared(
        "quality_check_results",
        "quality.check_results",
        "Every asset check evaluation (asset, check, partition, passed, severity, details, run), appended by the checks.",
    ),
    _shared(
        "quality_alerts",
        "quality.alerts",
        "Alerts raised by the alert sensors from failed checks and failed runs, with their webhook delivery state.",
    ),
    _shared(
        "eval_metrics",
        "eval.metrics",
        "Every stage's metrics in long format (one row per run, stage, cohort, metric, K): the retrieval funnel, the "
        "evaluation of each cut-off and the pooled summary append to it.",
    ),
    _shared(
        "models_registry",
        "models.registry",
        "Model artifacts by content hash (name, version, path, params, metrics, promotion gate verdict, promoted flag): "
        "registered by pi2i_scorer and the rankers, promoted by recommendations.",
    ),
]
SHARED_KEYS = {spec.metadata["dagster/table_name"]: spec.key for spec in SHARED_TABLES}


def observe(context: dg.AssetExecutionContext, warehouse, table: str) -> None:
    """Record an observation of the shared table ``table`` (its row count and schema) after a step wrote it."""
    context.log_event(dg.AssetObservation(asset_key=SHARED_KEYS[table], metadata=table_metadata(warehouse, table)))


def results(context: dg.AssetExecutionContext, *outcomes: dg.MaterializeResult) -> Iterator[dg.MaterializeResult]:
    """The results of a multi-asset step that wrote all its tables: selected assets are yielded, the
    others (written in the same transaction, but not selected) logged as materializations of this run."""
    selected = context.selected_asset_keys
    partitions = list(context.partition_keys) if context.has_partition_key_range or context.has_partition_key else [None]
    for outcome in outcomes:
        key = dg.AssetKey.from_coercible(outcome.asset_key)
        if key in selected:
            yield outcome
        else:
            for partition in partitions:
                context.log_event(dg.AssetMaterialization(asset_key=key, partition=partition, metadata=outcome.metadata))
