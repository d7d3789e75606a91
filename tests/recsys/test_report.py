"""The HTML report renders a run's eval.metrics rows into one self-contained, escaped file."""

import polars as pl

from recsys.report import ReportData, headline, render_report, report_path


def _metrics() -> pl.DataFrame:
    rows = []
    for stage, base in (("lgbm_ranker", 0.3), ("pop", 0.2), ("<script>", 0.1)):
        for metric in ("ndcg", "recall", "hit_rate"):
            for k in (10, 50):
                rows.append(("r1", "test", stage, "all", metric, k, base + k / 1000, base - 0.05, base + 0.05, 90, "2020-01-01"))
        rows.append(("r1", "test", stage, "heavy_users", "ndcg", 10, base, base - 0.1, base + 0.1, 30, "2020-01-01"))
        rows.append(("r1", "test", stage, "all", "gini_norm", 10, 0.5 + base, None, None, 90, "2020-01-01"))
        rows.append(("r1", "test", stage, "all", "ndcg", 10, base - 0.02, base - 0.04, base, 300, "pooled"))
    cols = ["run_id", "fold", "stage", "cohort", "metric", "k", "value", "ci_low", "ci_high", "n_users", "cutoff"]
    return pl.DataFrame(rows, schema=cols, orient="row").with_columns(pl.lit("ml").alias("dataset"), pl.lit("temporal").alias("protocol"))


def test_headline_sorts_by_ndcg_and_formats_intervals():
    table = headline(_metrics().filter(pl.col("cutoff") != "pooled"))
    assert table["stage"].to_list() == ["lgbm_ranker", "pop", "<script>"]
    assert table["ndcg@10 [95% CI]"][0] == "0.31 [0.25, 0.35]" and table["users"][0] == 90


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
    assert "0.31 [0.25, 0.35]" in html  # the cut-off's own headline
    assert str(report_path(tmp_path)).endswith("exports/report.html")
