"""The rankers' history features, sql/features/ranker_history.sql: the same frames on DuckDB and on Spark in
every cut-off mode, and the same frames read back per block of users from the warehouse (the asset's path,
``fold_frames``) as built in memory."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from resources.engine import SqlEngine, to_spark_sql
from resources.ranker_frames import build_ranker_frame, fold_frames, split_frame
from resources.warehouse import Warehouse, load_sql

pytestmark = pytest.mark.heavy(80)  # rough serial seconds of this module: scheduled first (tests/conftest.py)

T0 = dt.datetime(2024, 3, 1)
TYPES = ["click", "rate", "cart", "buy", "view", "fav"]


def _world(seed: int = 0, n: int = 4000, n_users: int = 90, n_items: int = 120):
    """A Zipf log with every event type, ratings, same-second ties broken by seq, sparse large ids; items
    with categories (some unknown) and a categorical attribute; a pool of popular and random items per user,
    with two channels' scores, and a few users without history."""
    rng = np.random.default_rng(seed)
    types = rng.choice(TYPES, n, p=[0.4, 0.25, 0.1, 0.1, 0.1, 0.05])
    log = pl.DataFrame(
        {
            "user_id": rng.integers(1, n_users + 1, n) * 7 + 1000,
            "item_id": (rng.zipf(1.4, n) % n_items) * 3 + 500,
            "event_type": types,
            "value": np.where(types == "rate", rng.integers(1, 6, n).astype(float), 1.0),
            "ts": [T0 + dt.timedelta(seconds=int(s)) for s in rng.integers(0, 40 * 86_400, n) // 600 * 600],  # ties
            "seq": rng.permutation(n) + 1,
        }
    )
    ids = np.arange(n_items) * 3 + 500
    items = pl.DataFrame(
        {
            "item_id": ids,
            "category_id": [None if i % 11 == 0 else int(i % 6) for i in ids],
            "decade": [f"{1950 + i % 7 * 10}s" for i in ids],
        }
    )
    users = pl.DataFrame({"user_id": np.arange(1, n_users + 4) * 7 + 1000, "age": [str(18 + i % 5) for i in range(n_users + 3)]})
    rows = []
    for u in users["user_id"].to_list():
        for i in sorted(set(rng.choice(ids, 25).tolist()) | set(ids[:8].tolist())):
            rows.append((u, i, float(rng.random()) if rng.random() < 0.7 else None, float(rng.normal())))
    pool = pl.DataFrame(rows, schema=["user_id", "item_id", "a__score", "b__score"], orient="row").with_columns(
        pl.col("a__score").rank("ordinal", descending=True).over("user_id").cast(pl.Int32).alias("a__rank"),
        pl.col("b__score").rank("ordinal", descending=True).over("user_id").cast(pl.Int32).alias("b__rank"),
    )
    return log, items, users, pool


def _split(log: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(history, target): the last 8 days are the label window."""
    start = T0 + dt.timedelta(days=32)
    return log.filter(pl.col("ts") < start), log.filter(pl.col("ts") >= start)


def test_the_statement_reads_the_pairs_categories_and_cutoffs_beside_the_split():
    _, tables = to_spark_sql(load_sql("features/ranker_history"))
    assert sorted(tables) == [
        "features.ranker_item_categories",
        "features.ranker_pairs",
        "features.ranker_user_cutoffs",
        "staging.split",
    ]


pytest.importorskip("pyspark", reason="the spark extra (requirements-test.lock installs it)")


def test_spark_gives_duckdbs_frames_in_every_cutoff_mode(tmp_path):
    log, items, users, pool = _world()
    history, target = _split(log)
    last = history.group_by("user_id").agg(pl.col("ts").max())
    explicit = last.head(40).select("user_id", (pl.col("ts") - dt.timedelta(days=3)).alias("cutoff"))
    spark = SqlEngine(engine="spark", lake_dir=str(tmp_path / "lake"))
    cases = [  # a label window's start (a datetime) is checked in memory, tests/recsys/test_rankers.py
        ("global", {}),
        ("per_user", {"label_mode": "graded"}),
        (explicit, {"raw_scores": True}),
    ]
    for cutoff, kwargs in cases:
        want = build_ranker_frame(pool, history, items, users, ["decade", "age"], target, cutoff=cutoff, **kwargs)
        got = build_ranker_frame(pool, history, items, users, ["decade", "age"], target, cutoff=cutoff, engine=spark, **kwargs)
        assert_frame_equal(got, want, check_exact=True)
        assert want.height == pool.height and want["label"].sum() > 0
        assert want["ui_cooc_last3"].max() > 0 and want["i_mean_rating"].drop_nulls().len() > 0


def test_the_warehouse_path_per_block_equals_the_frame_built_in_memory(tmp_path):
    """fold_frames (the asset's path: the statement as a warehouse table, read back per block of users) gives
    build_ranker_frame's frame for both folds; the table is dropped afterwards."""
    log, items, users, pool = _world(seed=1)
    history, target = _split(log)
    train_end = T0 + dt.timedelta(days=26)
    train, valid = history.filter(pl.col("ts") < train_end), history.filter(pl.col("ts") >= train_end)
    split = pl.concat([split_frame(train, valid), split_frame(target).with_columns(pl.lit("test").alias("fold"))])
    warehouse = Warehouse(data_dir=str(tmp_path))
    with warehouse.connect() as con:
        con.register("_split", split.to_arrow())
        con.execute("CREATE OR REPLACE TABLE staging.split AS SELECT * FROM _split")
    engine = SqlEngine(engine="duckdb")
    for fold, hist, labels in (("valid", train, valid), ("test", pl.concat([train, valid]), None)):
        for cutoff in ("global", "per_user"):
            blocks = list(fold_frames(engine, warehouse, pool, fold, items, users, ["decade"], cutoff=cutoff, block_users=13))
            assert len(blocks) == -(-pool["user_id"].n_unique() // 13)
            # in memory, the fold's history is the train part (seq kept: the split's own order)
            want = build_ranker_frame(pool, hist, items, users, ["decade"], labels, cutoff=cutoff)
            assert_frame_equal(pl.concat(blocks), want, check_exact=True)
            assert ("label" in want.columns) == (fold == "valid")
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        left = con.execute("SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'ranker_history%'").fetchall()
    assert left == []
