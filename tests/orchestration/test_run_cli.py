"""The first-run console: the end-of-run summary and `python -m orchestration.recommend`, on a small real warehouse.

The warehouse is a DuckDB file built here with the real contract (sql/ddl/warehouse.sql through
resources.warehouse.Warehouse) and the real pool / ranker-frame builders, so the SQL in sql/analytics runs
against the schemas the pipeline writes.
"""

from datetime import date, datetime, timedelta

import polars as pl
import pytest

from orchestration import recommend
from orchestration.summary import Outputs, format_summary, load_summary
from recsys.pool import build_pool
from recsys.schema import INTERACTION_SCHEMA
from resources.ranker_frames import build_ranker_frame
from resources.warehouse import Warehouse

RUN = "run-this"
OTHER_RUN = "run-before"
T0 = datetime(2024, 1, 1, 12, 0)


def _events(rows: list[tuple[int, int, float, int, str]]) -> pl.DataFrame:
    """(user, item, rating, day offset, fold) → staging.split rows."""
    return pl.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "event_type": ["rate"] * len(rows),
            "value": [r[2] for r in rows],
            "ts": [T0 + timedelta(days=r[3]) for r in rows],
            "event_date": [(T0 + timedelta(days=r[3])).date() for r in rows],
            "session_id": [None] * len(rows),
            "source": ["test"] * len(rows),
            "seq": list(range(len(rows))),
            "fold": [r[4] for r in rows],
        },
        schema={**INTERACTION_SCHEMA, "fold": pl.Utf8},
    )


def _recs(rows: list[tuple[int, int, float]]) -> pl.DataFrame:
    frame = pl.DataFrame({"user_id": [r[0] for r in rows], "item_id": [r[1] for r in rows], "score": [r[2] for r in rows]})
    return frame.with_columns(pl.col("score").rank("ordinal", descending=True).over("user_id").cast(pl.Int32).alias("rank"))


def _metric_rows(run_id: str, stage: str, value: float, ci: tuple[float, float], n_users: int, **over) -> dict:
    row = {
        "run_id": run_id,
        "evaluated_at": T0,
        "dataset": "test",
        "protocol": "temporal",
        "fold": "test",
        "stage": stage,
        "cohort": "all",
        "metric": "ndcg",
        "k": 10,
        "value": value,
        "ci_low": ci[0],
        "ci_high": ci[1],
        "n_users": n_users,
    }
    row.update(over)
    return row


@pytest.fixture
def warehouse_dir(tmp_path):
    wh = Warehouse(data_dir=str(tmp_path))
    items = pl.DataFrame(
        {
            "item_id": [10, 11, 12, 13, 14],
            "category_id": [1, 1, 2, 2, 3],
            "title": ["Alpha Movie", "Beta Movie", "Gamma Movie", "Delta Movie", "Epsilon Movie"],
        }
    )
    split = _events(
        [
            (1, 10, 5.0, 0, "train"),
            (1, 11, 4.0, 1, "train"),
            (1, 12, 3.0, 2, "valid"),
            (1, 14, 5.0, 9, "test"),  # held out: later recommended → a hit
            (2, 10, 2.0, 0, "train"),
            (2, 13, 4.0, 3, "valid"),
            (3, 11, 1.0, 1, "train"),  # a known user without recommendations
        ]
    )
    channels = {
        "itemcf": _recs([(1, 13, 0.9), (1, 14, 0.5), (2, 11, 0.7), (2, 12, 0.6)]),
        "pop": _recs([(1, 14, 3.0), (1, 13, 2.0), (2, 12, 3.0), (2, 11, 1.0)]),
    }
    pool = build_pool(channels, per_channel=10, max_size=10)
    history = split.filter(pl.col("fold") != "test").drop("fold")
    ranker_test = build_ranker_frame(pool, history, items, None)
    serving = (
        _recs([(1, 14, 0.8), (1, 13, 0.4), (2, 12, 0.6), (2, 11, 0.2)])
        .with_columns(pl.lit("lgbm_ranker").alias("model"), pl.lit("v1").alias("model_version"))
        .sort("user_id", "rank")
    )
    with wh.connect() as con:
        wh.write_table("raw.items", items, con=con)
        wh.write_table("staging.split", split, con=con)
        wh.write_table("candidates.pool", pool.with_columns(pl.lit("test").alias("fold")), con=con)
        wh.write_table("features.ranker_test", ranker_test, con=con)
        wh.write_table("serving.recommendations", serving, con=con)
        metrics = pl.DataFrame(
            [
                _metric_rows(RUN, "pool", 0.21, (0.15, 0.27), 90),
                _metric_rows(RUN, "lgbm_ranker", 0.25, (0.18, 0.30), 90),
                _metric_rows(RUN, "itemcf", 0.20, (0.14, 0.26), 90),
                _metric_rows(RUN, "lgbm_ranker", 0.99, (0.9, 1.0), 12, cohort="heavy_users"),  # not the 'all' cohort
                _metric_rows(RUN, "lgbm_ranker", 0.98, (0.9, 1.0), 90, fold="valid"),  # not the test fold
                _metric_rows(RUN, "lgbm_ranker", 0.97, (0.9, 1.0), 90, k=20),  # not @10
                _metric_rows(OTHER_RUN, "sequence_ranker", 0.50, (0.4, 0.6), 90),  # another run
            ]
        )
        wh.append("eval.metrics", metrics, con=con)
        registry = pl.DataFrame(
            {
                "name": ["lgbm_ranker", "sequence_ranker"],
                "version": ["v1", "s1"],
                "path": ["/m/v1.bin", "/m/s1.bin"],
                "params": ["{}", "{}"],
                "metrics": ['{"valid_ndcg10": 0.3125}', '{"valid_ndcg10": 0.2}'],
                "run_id": [RUN, RUN],
                "trained_at": [T0, T0],
                "promoted": [True, False],
            }
        )
        con.register("_registry", registry.to_arrow())
        con.execute(
            "INSERT INTO models.registry (name, version, path, params, metrics, run_id, trained_at, promoted) "
            "SELECT name, version, path, CAST(params AS JSON), CAST(metrics AS JSON), run_id, trained_at, promoted FROM _registry"
        )
    return tmp_path


# --- summary ------------------------------------------------------------------------------------
def test_summary_reads_this_runs_headline_best_first_and_the_served_model(warehouse_dir):
    outputs = Outputs(warehouse_dir, warehouse_dir / "logs" / "run-1.log", warehouse_dir / "logs" / "latest.log")
    summary = load_summary(outputs, RUN)
    assert summary.headline["stage"].to_list() == ["lgbm_ranker", "pool", "itemcf"]  # best first, this run, test/all/@10 only
    text = format_summary(summary)
    lines = text.splitlines()
    rows = [line for line in lines if line.startswith("  ") and "[" in line]
    assert [r.split()[0] for r in rows] == ["lgbm_ranker", "pool", "itemcf"]
    assert "0.250  [0.180, 0.300]" in rows[0] and rows[0].split()[4] == "90" and "<- serving" in rows[0]
    assert "<- serving" not in rows[1]
    assert "sequence_ranker" not in "\n".join(rows) and "0.990" not in text
    assert "Promoted: lgbm_ranker (version v1, promoted, valid NDCG@10 0.312) serves 4 recommendations to 2 users" in text
    assert f"serving.recommendations in {warehouse_dir / 'warehouse.duckdb'}" in text
    assert f"Parquet {warehouse_dir / 'exports' / 'recommendations.parquet'} (missing)" in text
    assert "HTML report:     missing" in text
    assert f"Full log:        {warehouse_dir / 'logs' / 'run-1.log'}" in text
    assert "make ui" in text and "http://127.0.0.1:3000" in text
    assert "make recommend USER=1" in text  # an id that has recommendations

    report = warehouse_dir / "exports" / "report.html"
    report.parent.mkdir(parents=True)
    report.write_text("<html></html>")
    (warehouse_dir / "exports" / "recommendations.parquet").write_bytes(b"")
    text = format_summary(load_summary(outputs, RUN))
    assert f"HTML report:     {report}\n" in text + "\n"
    assert "(missing)" not in text


def test_summary_of_a_run_that_did_not_evaluate(tmp_path):
    with Warehouse(data_dir=str(tmp_path)).connect():
        pass  # the contract's tables only: no serving.recommendations
    text = format_summary(load_summary(Outputs(tmp_path), "run-x"))
    assert "no NDCG@10 rows for run run-x" in text
    assert "nothing is served yet" in text
    assert "make recommend USER=<id>" in text
    assert "no warehouse" in format_summary(load_summary(Outputs(tmp_path / "none"), None))


# --- recommend CLI ------------------------------------------------------------------------------
def test_recommend_known_user_shows_history_items_and_channels(warehouse_dir, monkeypatch, capsys):
    monkeypatch.setenv("RECDAG_DATA_DIR", str(warehouse_dir))
    assert recommend.main(["--user", "1", "--k", "2"]) == 0
    out = capsys.readouterr().out
    assert "User 1: top 2 from lgbm_ranker (version v1)" in out
    history = out.split("Recent history")[1].split("Top 2")[0]
    # newest first, only what the recommendations were built from (train + valid), the test event counted apart
    assert history.index("Gamma Movie") < history.index("Beta Movie") < history.index("Alpha Movie")
    assert "the last 3 of 3 interactions" in history and "+1 later interactions in the held-out test window" in history
    assert str(date(2024, 1, 3)) in history and "rate" in history
    top = out.split("Top 2 recommendations")[1]
    assert top.index("Epsilon Movie (item 14)") < top.index("Delta Movie (item 13)")
    assert "score 0.800" in top and "[hit:" in top.split("Delta Movie")[0]
    assert "proposed by 2 channels: pop #1, itemcf #2" in top
    assert "proposed by 2 channels: itemcf #1, pop #2" in top
    assert "Hits: 1 of these 2" in out


def test_recommend_unknown_user_exits_1_naming_the_user_and_coverage(warehouse_dir, monkeypatch, capsys):
    monkeypatch.setenv("RECDAG_DATA_DIR", str(warehouse_dir))
    assert recommend.main(["--user", "999"]) == 1
    err = capsys.readouterr().err
    assert "User 999 has no recommendations" in err and "covers 2 users, e.g. 1, 2." in err
    assert recommend.main(["--user", "3"]) == 1  # known, but not in the latest window
    assert "1 interactions, but not in the latest window" in capsys.readouterr().err


def test_recommend_rejects_a_non_integer_user_with_usage(warehouse_dir, monkeypatch, capsys):
    monkeypatch.setenv("RECDAG_DATA_DIR", str(warehouse_dir))
    assert recommend.main(["--user", "alice"]) == 2  # `make recommend` without USER= passes the login name
    err = capsys.readouterr().err
    assert "--user must be an integer user id, got 'alice'" in err and "make recommend USER=<id>" in err


def test_recommend_without_a_warehouse_says_to_run_the_pipeline(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RECDAG_DATA_DIR", str(tmp_path / "empty"))
    assert recommend.main(["--user", "1"]) == 1
    assert "run `make run` first" in capsys.readouterr().err
    assert not (tmp_path / "empty" / "warehouse.duckdb").exists()


def test_summary_names_the_final_stage_and_what_it_serves(warehouse_dir):
    wh = Warehouse(data_dir=str(warehouse_dir))
    decision = pl.DataFrame(
        {
            "run_id": [RUN],
            "stage": ["blend"],
            "kind": ["blend"],
            "rankers_passed": ["lgbm_ranker@v1,sequence_ranker@s1"],
            "valid_ndcg10": [0.31],
            "best_channel": ["pop"],
            "best_channel_ndcg10": [0.2],
            "margin": [0.11],
            "margin_low": [0.02],
            "margin_high": [0.2],
            "n_users": [16],
            "decided_at": [T0],
        }
    )
    with wh.connect() as con:
        wh.append("models.final_stage", decision, con=con)
        con.execute("UPDATE serving.recommendations SET model = 'blend', model_version = 'v1+s1'")
    text = format_summary(load_summary(Outputs(warehouse_dir), RUN))
    assert "Served: blend, the blend of lgbm_ranker, sequence_ranker (both promoted): 4 recommendations to 2 users" in text
    assert "Final stage: blend (blend), chosen on 16 held-out valid users: NDCG@10 0.310; best channel pop 0.200" in text
    assert "+0.110 [+0.020, +0.200] over the best channel" in text
    assert "NOT marked promoted" not in text
    # the rankers fused with a channel's list (recsys.final_stage.channel_blend) say so
    with wh.connect() as con:
        con.execute("UPDATE models.final_stage SET stage = 'blend+ease' WHERE run_id = $run", {"run": RUN})
        con.execute("UPDATE serving.recommendations SET model = 'blend+ease'")
    text = format_summary(load_summary(Outputs(warehouse_dir), RUN))
    assert "Served: blend+ease, the blend of lgbm_ranker, sequence_ranker with the channel ease (both promoted)" in text
