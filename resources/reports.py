"""Writes the HTML report (recsys.report) of one run from the warehouse: what `evaluation_summary`
does after every run and `make report` (orchestration/report.py) does on demand."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from recsys.report import ReportData, render_report, report_path
from resources.warehouse import Warehouse, utcnow


def latest_evaluated_run(warehouse: Warehouse) -> str | None:
    rows = warehouse.query_file("analytics/report_latest_run")
    return rows["run_id"][0] if rows.height else None


def load_report_data(warehouse: Warehouse, run_id: str) -> ReportData:
    metrics = warehouse.query_file("analytics/report_run_metrics", {"run_id": run_id})
    if metrics.is_empty():
        raise ValueError(f"eval.metrics has no rows for run {run_id!r}: nothing to report")
    own = metrics.filter(pl.col("cutoff").is_null() | (pl.col("cutoff") != "pooled"))
    first = (own if own.height else metrics).row(0, named=True)
    paired = pl.DataFrame()
    if warehouse.table_exists("eval.pooled_paired_test"):
        paired = warehouse.query_file("analytics/run_summary_pooled_paired", {"run_id": run_id})
    if paired.is_empty() and warehouse.table_exists("eval.last_paired_test"):
        # no pooled tests for this run (evaluation_summary has not run yet): this cut-off's own
        paired = warehouse.query("SELECT * EXCLUDE (run_id) FROM eval.last_paired_test WHERE run_id = $r", {"r": run_id})
    past = warehouse.query_file("analytics/evaluation_past_runs", {"dataset": first["dataset"], "protocol": first["protocol"]})
    sample = None
    if warehouse.table_exists("eval.user_sample"):
        rows = warehouse.query_file("analytics/run_summary_sample", {"run_id": run_id})
        sample = rows.row(0, named=True) if rows.height else None
    served = None
    if warehouse.table_exists("serving.recommendations"):
        models = warehouse.query("SELECT DISTINCT model FROM serving.recommendations")["model"].to_list()
        served = ", ".join(models) or None
    return ReportData(
        run_id=run_id,
        dataset=first["dataset"],
        protocol=first["protocol"],
        cutoff=first["cutoff"],
        metrics=metrics,
        paired=paired,
        past=past,
        served=served,
        generated_at=f"{utcnow():%Y-%m-%d %H:%M} UTC",
        sample=sample,
    )


def write_report(warehouse: Warehouse, run_id: str, out: Path | None = None) -> Path:
    """Render the report of ``run_id`` to ``out`` (default $RECDAG_DATA_DIR/exports/report.html), atomically."""
    path = Path(out) if out is not None else report_path(warehouse.data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(render_report(load_report_data(warehouse, run_id)), encoding="utf-8")
    tmp.replace(path)
    return path
