"""The HTML report renders a run's eval.metrics rows into one self-contained, escaped file."""

from datetime import datetime

import polars as pl

from recsys.report import ReportData, fairness, headline, render_report, report_path


def _metrics() -> pl.DataFrame:
    rows = []
    for stage, base in (("lgbm_ranker", 0.3), ("pop", 0.2), ("<script>", 0.1)):
        for metric in ("ndcg", "recall", "hit_rate"):
            for k in (10, 50):
                rows.append(("r1", "test", stage, "all", metric, k, base + k / 1000, base - 0.05, base + 0.05, 90, "2020-01-01"))
        rows.append(("r1", "test", stage, "heavy_users", "ndcg", 10, base, base - 0.1, base + 0.1, 30, "2020-01-01"))
        rows.append(("r1", "test", stage, "all", "gini_norm", 10, 0.5 + base, None, None, 90, "2020-01-01"))
        rows.append(("r1", "test", stage, "all", "jain_norm", 10, 0.5 - base, None, None, 90, "2020-01-01"))
        rows.append(("r1", "test", stage, "all", "ndcg", 10, base - 0.02, base - 0.04, base, 300, "pooled"))
    cols = ["run_id", "fold", "stage", "cohort", "metric", "k", "value", "ci_low", "ci_high", "n_users", "cutoff"]
    return pl.DataFrame(rows, schema=cols, orient="row").with_columns(pl.lit("ml").alias("dataset"), pl.lit("temporal").alias("protocol"))


def test_headline_sorts_by_ndcg_and_formats_intervals():
    table = headline(_metrics().filter(pl.col("cutoff") != "pooled"))
    assert table["stage"].to_list() == ["lgbm_ranker", "pop", "<script>"]
    assert table["ndcg@10 [95% CI]"][0] == "0.3100 [0.2500, 0.3500]" and table["users"][0] == 90


def test_report_is_self_contained_and_escaped(tmp_path):
    paired = pl.DataFrame(
        {
            "stage": ["lgbm_ranker"],
            "versus": ["pop"],
            "mean_diff": [0.1],
            "ci_low": [0.05],
            "ci_high": [0.15],
            "p_value": [0.001],
            "p_holm": [0.002],
            "decided_95": [True],
            "n_users": [300],
            "n_cutoffs": [4],
            "verdict": ["lgbm_ranker beats pop by 0.1 NDCG@10 [0.05, 0.15]: decided at 95% after Holm"],
        }
    )
    data = ReportData("r1", "ml & co", "temporal", "2020-01-01", _metrics(), paired=paired, served="lgbm_ranker", generated_at="now")
    html = render_report(data)
    assert "<script>" not in html and "&lt;script&gt;" in html and "ml &amp; co" in html
    assert html.count("<img") >= 3 and "src='http" not in html and "<link" not in html
    assert "Pooled over 4 cut-offs" in html and "decided at 95% after Holm" in html
    assert "0.3100 [0.2500, 0.3500]" in html  # the cut-off's own headline
    assert str(report_path(tmp_path)).endswith("exports/report.html")


def test_fairness_table_least_concentrated_first():
    table = fairness(_metrics())
    assert table.columns == ["stage", "gini_norm@10", "jain_norm@10"]
    assert table["stage"].to_list() == ["<script>", "pop", "lgbm_ranker"]


def test_report_of_one_cutoff_shows_its_own_paired_tests_and_past_runs():
    """What evaluation writes before evaluation_summary pools the run: the cut-off's paired tests (no n_cutoffs)."""
    paired = pl.DataFrame(
        {
            "stage": ["lgbm_ranker", "lgbm_ranker"],
            "versus": ["pop", "<script>"],
            "mean_diff": [0.1, 0.2],
            "ci_low": [-0.01, 0.1],
            "ci_high": [0.2, 0.3],
            "p_value": [0.04, 0.001],
            "p_holm": [0.04, 0.002],
            "decided_95": [False, True],
            "n_users": [90, 90],
            "verdict": ["lgbm_ranker beats pop by 0.1 NDCG@10 [-0.01, 0.2]: not decided at 95% after Holm", "x"],
        }
    )
    past = pl.DataFrame(
        {
            "run_id": ["r0", "r0", "r1", "r1"],
            "cutoff": ["2020-01-01"] * 4,
            "evaluated_at": [datetime(2020, 1, 2), datetime(2020, 1, 2), datetime(2020, 1, 3), datetime(2020, 1, 3)],
            "stage": ["lgbm_ranker", "pool", "lgbm_ranker", "pool"],
            "ndcg10": [0.2, 0.18, 0.31, 0.25],
        }
    )
    own = _metrics().filter(pl.col("cutoff") != "pooled").with_columns(pl.lit(datetime(2020, 1, 3, 12, 30)).alias("evaluated_at"))
    html = render_report(ReportData("r1", "ml", "temporal", "2020-01-01", own, paired=paired, past=past, generated_at="now"))
    assert "this cut-off&#x27;s users" in html and "Pooled over" not in html
    assert "not decided at 95% after Holm" in html and "&lt;script&gt;" in html and "<script>" not in html
    assert "class='yes'>True" in html and "class='no'>False" in html
    assert "evaluated 2020-01-03 12:30 UTC" in html
    assert "gini_norm@10" in html and "jain_norm@10" in html
    assert html.count("<img") == 4  # metric vs K, funnel, fairness, past runs
    assert "no earlier run" not in html
