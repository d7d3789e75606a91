"""A self-contained HTML report of one evaluation run, for people who do not open Dagster.

API::

    html = render_report(ReportData(...))     # one string: inline CSS, images as base64 PNG
    path = report_path(data_dir)               # $RECDAG_DATA_DIR/exports/report.html

``ReportData`` holds frames read from the warehouse by the caller (resources/reports.py, for
assets/evaluation.py, assets/backtest.py and orchestration/report.py): the run's eval.metrics rows
(the cut-off's own and the rows pooled over cut-offs), the paired tests (pooled, or the cut-off's own
until evaluation_summary has run) and the NDCG@10 of past runs. Every string is HTML-escaped; no
external file, script or font is referenced, so the file can be mailed or attached to a ticket.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from recsys.metrics.sampling import sample_note

HEADLINE_K = 10
HEADLINE_METRICS = ("ndcg", "recall", "hit_rate")
FAIRNESS_METRICS = ("gini_norm", "gini_w_norm", "jain_norm", "entropy_norm", "qf_norm")

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px auto; padding: 0 16px; max-width: 1100px; color: #1d2433; }
h1 { font-size: 24px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 28px; border-bottom: 1px solid #d8dce3; }
.meta { color: #5b6474; font-size: 13px; } table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border: 1px solid #d8dce3; padding: 4px 8px; text-align: right; } th { background: #f2f4f7; }
td:first-child, th:first-child { text-align: left; } .yes { color: #157f3b; font-weight: 600; } .no { color: #8a5a00; }
img { max-width: 100%; border: 1px solid #e5e8ee; margin: 6px 0; } .note { font-size: 13px; color: #5b6474; }
"""


@dataclass
class ReportData:
    run_id: str
    dataset: str
    protocol: str
    cutoff: str | None
    metrics: pl.DataFrame  # the run's eval.metrics rows (cutoff of the run and 'pooled')
    paired: pl.DataFrame = field(default_factory=pl.DataFrame)  # eval.pooled_paired_test rows of the run
    past: pl.DataFrame = field(default_factory=pl.DataFrame)  # run_id, cutoff, evaluated_at, stage, ndcg10
    served: str | None = None
    generated_at: str = ""
    sample: dict | None = None  # the run's eval.user_sample row of the test fold (None: not recorded)


def report_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "exports" / "report.html"


def _e(value) -> str:
    return html.escape("" if value is None else str(value))


def _num(value, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _table(frame: pl.DataFrame, classes: dict[str, callable] | None = None) -> str:
    if frame.is_empty():
        return "<p class='note'>none</p>"
    head = "".join(f"<th>{_e(c)}</th>" for c in frame.columns)
    rows = []
    for row in frame.iter_rows(named=True):
        cells = []
        for col, value in row.items():
            text = _num(value) if isinstance(value, float) else _e(value)
            css = (classes or {}).get(col)
            cells.append(f"<td class='{css(value)}'>{text}</td>" if css else f"<td>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return f"<img alt='plot' src='data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}'>"


def _figure(width: float = 8.0, height: float = 4.0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def headline(metrics: pl.DataFrame, k: int = HEADLINE_K) -> pl.DataFrame:
    """stage, metric@k "value [low, high]" cells (4 decimals), users; best NDCG first (rows with intervals only)."""
    part = metrics.filter((pl.col("cohort") == "all") & (pl.col("k") == k) & pl.col("metric").is_in(HEADLINE_METRICS))
    part = part.filter(pl.col("ci_low").is_not_null())
    if part.is_empty():
        return pl.DataFrame()
    fixed = [pl.col(c).map_elements(lambda v: f"{v:.4f}", return_dtype=pl.Utf8) for c in ("value", "ci_low", "ci_high")]
    cells = part.with_columns(pl.format("{} [{}, {}]", *fixed).alias("cell"))
    wide = cells.pivot(on="metric", index=["stage", "n_users"], values="cell")
    order = part.filter(pl.col("metric") == "ndcg").select("stage", pl.col("value").alias("_ndcg"))
    cols = [m for m in HEADLINE_METRICS if m in wide.columns]
    return (
        wide.join(order, on="stage", how="left")
        .sort("_ndcg", descending=True, nulls_last=True)
        .select("stage", *[pl.col(m).alias(f"{m}@{k} [95% CI]") for m in cols], pl.col("n_users").alias("users"))
    )


def fairness(metrics: pl.DataFrame, k: int = HEADLINE_K) -> pl.DataFrame:
    """stage and the corrected exposure-fairness measures at k (columns present in the rows only), least concentrated first."""
    part = metrics.filter((pl.col("k") == k) & pl.col("metric").is_in(FAIRNESS_METRICS) & (pl.col("cohort") == "all"))
    if part.is_empty():
        return pl.DataFrame()
    wide = part.pivot(on="metric", index="stage", values="value", aggregate_function="first")
    cols = [m for m in FAIRNESS_METRICS if m in wide.columns]
    return wide.select("stage", *[pl.col(m).alias(f"{m}@{k}") for m in cols]).sort(f"{cols[0]}@{k}", nulls_last=True)


def _metric_vs_k(metrics: pl.DataFrame, metric: str = "ndcg") -> str:
    part = metrics.filter((pl.col("metric") == metric) & (pl.col("cohort") == "all") & pl.col("ci_low").is_not_null())
    if part.is_empty():
        return ""
    fig, ax = _figure()
    for stage in sorted(part["stage"].unique()):
        s = part.filter(pl.col("stage") == stage).sort("k")
        ax.plot(s["k"].to_list(), s["value"].to_list(), marker="o", label=stage)
    ax.set_xscale("log")
    ax.set_xlabel("K")
    ax.set_ylabel(f"{metric}@K")
    ax.set_title(f"{metric} versus K (test fold, all users)")
    ax.legend(fontsize=7, ncol=2)
    return _png(fig)


def _bars(metrics: pl.DataFrame, metric: str, k: int, xlabel: str, title: str, color: str) -> str:
    part = metrics.filter((pl.col("metric") == metric) & (pl.col("k") == k) & (pl.col("cohort") == "all"))
    part = part.group_by("stage").agg(pl.col("value").first()).sort("value")
    if part.is_empty():
        return ""
    fig, ax = _figure(8, 0.3 * part.height + 1.2)
    ax.barh(part["stage"].to_list(), part["value"].to_list(), color=color)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return _png(fig)


def _past_runs(past: pl.DataFrame) -> str:
    """NDCG@10 per stage over the runs (one x position per run, oldest first, labelled by date and cut-off)."""
    if past.is_empty():
        return ""
    runs = past.group_by("run_id").agg(pl.col("evaluated_at").min().alias("at"), pl.col("cutoff").first()).sort("at").with_row_index("x")
    rows = past.join(runs.select("run_id", "x"), on="run_id")
    fig, ax = _figure()
    for stage in sorted(rows["stage"].unique()):
        s = rows.filter(pl.col("stage") == stage).sort("x")
        ax.plot(s["x"].to_list(), s["ndcg10"].to_list(), marker="o", label=stage)
    labels = [f"{at:%m-%d %H:%M}" if hasattr(at, "strftime") else str(at) for at in runs["at"].to_list()]
    labels = [f"{label}\ncut-off {cutoff}" if cutoff else label for label, cutoff in zip(labels, runs["cutoff"].to_list())]
    ax.set_xticks(runs["x"].to_list(), labels, fontsize=7, rotation=30, ha="right")
    ax.set_xlim(-0.5, runs.height - 0.5)
    ax.set_xlabel("run (evaluated at, UTC)")
    ax.set_ylabel("NDCG@10 (test)")
    ax.set_title("Past runs of this dataset and protocol")
    ax.legend(fontsize=8)
    return _png(fig)


def render_report(data: ReportData) -> str:
    own = data.metrics.filter(pl.col("cutoff").is_null() | (pl.col("cutoff") != "pooled"))
    pooled = data.metrics.filter(pl.col("cutoff") == "pooled")
    test = own.filter(pl.col("fold") == "test")
    headline_rows = test.filter((pl.col("cohort") == "all") & pl.col("ci_low").is_not_null())
    n_users = headline_rows["n_users"].max()
    ndcg = headline_rows.filter((pl.col("metric") == "ndcg") & (pl.col("k") == HEADLINE_K))
    users_line = sample_note(data.sample, (ndcg["ci_high"] - ndcg["ci_low"]).to_list()) if data.sample else f"{n_users} test users"
    evaluated = own["evaluated_at"].min() if "evaluated_at" in own.columns and own.height else None
    evaluated = f"{evaluated:%Y-%m-%d %H:%M} UTC" if hasattr(evaluated, "strftime") else evaluated
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>recdag report: {_e(data.dataset)} {_e(data.protocol)}</title><style>{_CSS}</style></head><body>",
        f"<h1>recdag evaluation: {_e(data.dataset)}</h1>",
        f"<p class='meta'>protocol {_e(data.protocol)} · cut-off {_e(data.cutoff or 'n/a')} · run {_e(data.run_id)} · "
        f"{_e(users_line)} · evaluated {_e(evaluated or 'n/a')} · generated {_e(data.generated_at)}"
        + (f" · served: <b>{_e(data.served)}</b>" if data.served else "")
        + "</p>",
        "<h2>Headline (test fold, all users, bootstrap 95% intervals over users)</h2>",
        _table(headline(test)),
    ]
    if not pooled.is_empty():
        n_cut = data.paired["n_cutoffs"].max() if not data.paired.is_empty() and "n_cutoffs" in data.paired.columns else "?"
        parts += [
            f"<h2>Pooled over {_e(n_cut)} cut-off{'' if n_cut == 1 else 's'} (users resampled within cut-offs)</h2>",
            _table(headline(pooled)),
        ]
    if not data.paired.is_empty():
        cols = [
            c
            for c in ("stage", "versus", "mean_diff", "ci_low", "ci_high", "p_value", "p_holm", "decided_95", "n_users")
            if c in data.paired.columns
        ]
        scope = "users pooled over the cut-offs" if "n_cutoffs" in data.paired.columns else "this cut-off's users"
        parts += [
            f"<h2>Paired tests (NDCG@10, {_e(scope)}, Holm-corrected across the comparisons)</h2>",
            _table(data.paired.select(cols), {"decided_95": lambda v: "yes" if v else "no"}),
            "<p class='note'>" + "<br>".join(_e(v) for v in data.paired["verdict"].to_list()) + "</p>"
            if "verdict" in data.paired.columns
            else "",
        ]
    cohorts = test.filter((pl.col("metric") == "ndcg") & (pl.col("k") == HEADLINE_K) & pl.col("ci_low").is_not_null())
    if not cohorts.is_empty():
        parts += [
            "<h2>NDCG@10 per cohort</h2>",
            _table(cohorts.pivot(on="cohort", index="stage", values="value").sort("stage")),
        ]
    parts += [
        "<h2>Metric versus K</h2>",
        _metric_vs_k(test),
        "<h2>Retrieval funnel: what each stage keeps (Recall@50)</h2>",
        _bars(test, "recall", 50, "Recall@50 (test)", "Funnel", "#3b7dd8"),
        "<h2>Item-exposure fairness</h2>",
        _bars(
            test, "gini_norm", HEADLINE_K, "corrected Gini of exposure @10 (0 equal, 1 concentrated)", "Rampisela et al. 2024", "#d8893b"
        ),
        _table(fairness(test)) if not fairness(test).is_empty() else "",
        "<p class='note'>Corrected measures (Rampisela et al., TORS 2024): Gini 0 and Jain, entropy, QF 1 are the fairest "
        "exposure achievable with these list lengths; Gini 1 and the others 0 the most concentrated.</p>",
        "<h2>Past runs</h2>",
        _past_runs(data.past) or "<p class='note'>no earlier run of this dataset and protocol</p>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)
