"""The end-of-run summary `make run` prints: read from the warehouse, never assumed.

``load_summary`` queries ``eval.metrics`` for the evaluation run's headline (NDCG@10 with its bootstrap 95%
interval per stage, test fold, all users, best first) and ``serving.recommendations`` / ``models.registry`` for
the model that serves; ``format_summary`` turns that and the output paths into the lines a person reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl

from recsys.metrics.sampling import sample_note
from resources.warehouse import Warehouse, load_sql

HEADLINE_K = 10
UI_URL = "http://127.0.0.1:3000"


@dataclass
class Outputs:
    """Where a run's results live under the data dir."""

    data_dir: Path
    log_path: Path | None = None
    latest_log: Path | None = None

    @property
    def warehouse(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    @property
    def parquet(self) -> Path:
        return self.data_dir / "exports" / "recommendations.parquet"

    @property
    def report(self) -> Path:
        return self.data_dir / "exports" / "report.html"


@dataclass
class RunSummary:
    outputs: Outputs
    eval_run_id: str | None
    headline: pl.DataFrame = field(default_factory=pl.DataFrame)  # stage, ndcg, ci_low, ci_high, n_users
    serving: pl.DataFrame = field(default_factory=pl.DataFrame)  # one row per model found in serving.recommendations
    final: pl.DataFrame = field(default_factory=pl.DataFrame)  # the newest final-stage decision (models.final_stage)
    sample: pl.DataFrame = field(default_factory=pl.DataFrame)  # who the run scored on test (eval.user_sample)
    problems: list[str] = field(default_factory=list)  # what could not be read, in words


def load_summary(outputs: Outputs, eval_run_id: str | None, k: int = HEADLINE_K) -> RunSummary:
    summary = RunSummary(outputs=outputs, eval_run_id=eval_run_id)
    if not outputs.warehouse.exists():
        summary.problems.append(f"no warehouse at {outputs.warehouse}")
        return summary
    warehouse = Warehouse(data_dir=str(outputs.data_dir))
    with warehouse.connect(read_only=True) as con:
        if eval_run_id is not None:
            summary.headline = _read(con, "analytics/run_summary_headline", {"run_id": eval_run_id, "k": k})
            summary.sample = _read(con, "analytics/run_summary_sample", {"run_id": eval_run_id})
        summary.serving = _read(con, "analytics/run_summary_serving", {})
        summary.final = _read(con, "analytics/run_summary_final", {})
    return summary


def _read(con: duckdb.DuckDBPyConnection, name: str, params: dict) -> pl.DataFrame:
    try:
        return con.execute(load_sql(name), params).pl()
    except duckdb.CatalogException:  # a table the run did not get to create: reported as missing by format_summary
        return pl.DataFrame()


def format_headline(headline: pl.DataFrame, k: int = HEADLINE_K, served: frozenset[str] = frozenset()) -> list[str]:
    """The headline as aligned text rows: stage, NDCG@k, [ci_low, ci_high], users; ``served`` stages are marked."""
    if headline.is_empty():
        return []
    width = max(len("stage"), *(len(s) for s in headline["stage"]))
    lines = [f"  {'stage':<{width}}  {f'NDCG@{k}':>8}  {'95% interval':<17}  {'users':>6}"]
    for row in headline.iter_rows(named=True):
        interval = "" if row["ci_low"] is None or row["ci_high"] is None else f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
        value = "n/a" if row["ndcg"] is None else f"{row['ndcg']:.3f}"
        users = "" if row["n_users"] is None else f"{row['n_users']:,}"
        mark = "  <- serving" if row["stage"] in served else ""
        lines.append(f"  {row['stage']:<{width}}  {value:>8}  {interval:<17}  {users:>6}{mark}")
    return lines


def format_summary(summary: RunSummary, k: int = HEADLINE_K) -> str:
    out = summary.outputs
    lines: list[str] = []
    run = summary.eval_run_id
    if run is None:
        lines.append("Results: the evaluation did not run in this invocation.")
    elif summary.headline.is_empty():
        lines.append(f"Results: eval.metrics has no NDCG@{k} rows for run {run} (the evaluation did not finish).")
    else:
        lines.append(f"Results of run {run} (eval.metrics: test fold, all users, NDCG@{k} with bootstrap 95% interval, best first):")
        served = frozenset(summary.serving["model"].to_list()) if not summary.serving.is_empty() else frozenset()
        if served and not summary.final.is_empty():
            served |= {"final"}  # the stage `final` is the served list (assets/final_stage.py)
        lines.extend(format_headline(summary.headline, k, served))
        sample = summary.sample.row(0, named=True) if not summary.sample.is_empty() else None
        widths = (summary.headline["ci_high"] - summary.headline["ci_low"]).to_list()
        note = sample_note(sample, widths, metric=f"NDCG@{k}")
        if note:
            lines.append(f"Users scored: {note}")
    lines.append("")

    example_user = None
    if summary.serving.is_empty():
        lines.append("Promoted: nothing is served yet (serving.recommendations is missing or empty).")
    else:
        decision = summary.final.row(0, named=True) if not summary.final.is_empty() else None
        for row in summary.serving.iter_rows(named=True):
            if decision is not None and decision["kind"] != "ranker" and row["model"] == decision["stage"]:
                fused = ", ".join(r.split("@")[0] for r in (decision["rankers_passed"] or "").split(",") if r)
                what = f"the {decision['kind']} as is"
                if decision["kind"] == "blend":  # "blend" or "blend+<channel>" (recsys.final_stage.channel_blend)
                    channel = decision["stage"].removeprefix("blend").removeprefix("+")
                    promoted = "both promoted" if fused.count(",") == 1 else "promoted"
                    what = f"the blend of {fused}{f' with the channel {channel}' if channel else ''} ({promoted})"
                lines.append(f"Served: {row['model']}, {what}: {row['n_rows']:,} recommendations to {row['n_users']:,} users")
                continue
            state = "promoted" if row["promoted"] else "NOT marked promoted in models.registry"
            valid = "" if row["valid_ndcg10"] is None else f", valid NDCG@10 {row['valid_ndcg10']:.3f}"
            gate = {True: ", promotion gate passed", False: ", promotion gate FAILED"}.get(row["gate_passed"], "")
            trained = ""
            if row["trained_run_id"] is not None and run is not None and row["trained_run_id"] != run:
                trained = f"; trained by an earlier run {row['trained_run_id']}"
            lines.append(
                f"Promoted: {row['model']} (version {row['model_version']}, {state}{valid}{gate}) serves "
                f"{row['n_rows']:,} recommendations to {row['n_users']:,} users{trained}"
            )
        example_user = summary.serving["example_user"][0]
        if decision is not None:
            margin = (
                ""
                if decision["margin"] is None
                else (f", {decision['margin']:+.3f} [{decision['margin_low']:+.3f}, {decision['margin_high']:+.3f}] over the best channel")
            )
            lines.append(
                f"Final stage: {decision['stage']} ({decision['kind']}), chosen on {decision['n_users']} held-out valid users: "
                f"NDCG@10 {decision['valid_ndcg10']:.3f}; best channel {decision['best_channel']} {decision['best_channel_ndcg10'] or 0:.3f}"
                f"{margin} (models.final_stage)"
            )
    if summary.serving.is_empty():
        lines.append(f"Recommendations: none yet (DuckDB table serving.recommendations in {out.warehouse})")
    else:
        lines.append(f"Recommendations: DuckDB table serving.recommendations in {out.warehouse}")
    lines.append(f"                 Parquet {out.parquet}" + ("" if out.parquet.exists() else " (missing)"))
    if out.report.exists():
        lines.append(f"HTML report:     {out.report}")
    else:
        lines.append(f"HTML report:     missing ({out.report} does not exist; `make report` writes it)")
    if out.log_path is not None:
        latest = f" (also {out.latest_log})" if out.latest_log is not None else ""
        lines.append(f"Full log:        {out.log_path}{latest}")
    for problem in summary.problems:
        lines.append(f"Note: {problem}")
    lines.append("")
    lines.append(f"Next: make ui                    the Dagster UI at {UI_URL}: every run, asset, check and its metadata")
    example = f", e.g. make recommend USER={example_user}" if example_user is not None else ""
    lines.append(f"      make recommend USER=<id>   one user's history and recommendations, explained{example}")
    return "\n".join(lines)


@dataclass
class PooledSummary:
    run_id: str
    headline: pl.DataFrame = field(default_factory=pl.DataFrame)  # stage, ndcg, ci_low, ci_high, n_users
    paired: pl.DataFrame = field(default_factory=pl.DataFrame)  # eval.pooled_paired_test rows of the run
    problems: list[str] = field(default_factory=list)


def load_pooled(data_dir: Path, run_id: str, k: int = HEADLINE_K) -> PooledSummary:
    """What evaluation_summary wrote in ``run_id``: the pooled headline and the Holm-corrected paired tests."""
    pooled = PooledSummary(run_id=run_id)
    outputs = Outputs(data_dir)
    if not outputs.warehouse.exists():
        pooled.problems.append(f"no warehouse at {outputs.warehouse}")
        return pooled
    with Warehouse(data_dir=str(data_dir)).connect(read_only=True) as con:
        pooled.headline = _read(con, "analytics/run_summary_pooled", {"run_id": run_id, "k": k})
        paired = _read(con, "analytics/run_summary_pooled_paired", {"run_id": run_id})
        pooled.paired = paired
    return pooled


def format_pooled(pooled: PooledSummary, k: int = HEADLINE_K) -> str:
    """The backtest's pooled headline and which differences are decided at 95% after Holm."""
    if pooled.headline.is_empty():
        return f"Backtest: no pooled rows for run {pooled.run_id} (evaluation_summary did not run). {' '.join(pooled.problems)}"
    cutoffs = pooled.paired["cutoffs"][0] if not pooled.paired.is_empty() else "?"
    lines = [
        f"Backtest pooled over cut-offs {cutoffs} (eval.metrics cutoff = 'pooled'; users resampled within cut-offs, 95% intervals):",
        *format_headline(pooled.headline, k),
        "",
    ]
    if not pooled.paired.is_empty():
        lines.append("Paired tests of the served stage against every other stage (NDCG@10, Holm-corrected across the comparisons):")
        lines.extend(f"  {v}" for v in pooled.paired["verdict"].to_list())
    return "\n".join(lines)
