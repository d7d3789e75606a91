"""Split protocols: no leakage across cuts, every row kept exactly once, parameters recorded."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest

from recsys.schema import INTERACTION_SCHEMA, conform
from recsys.split import Split, drop_cold, files_split, leave_last_out_split, relevant, temporal_split


def make_interactions(n_rows: int = 3000, n_users: int = 120, n_items: int = 200, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    # coarse timestamps (whole hours over ~40 days) so many rows share a ts, as in real logs
    hours = rng.integers(0, 1000, n_rows)
    ts = [datetime(2024, 1, 1) + timedelta(hours=int(h)) for h in hours]
    frame = pl.DataFrame(
        {
            "user_id": rng.integers(0, n_users, n_rows),
            "item_id": rng.integers(0, n_items, n_rows),
            "event_type": ["rate"] * n_rows,
            "value": rng.integers(1, 6, n_rows).astype(float),
            "ts": ts,
            "session_id": [None] * n_rows,
            "source": ["test"] * n_rows,
        }
    ).with_columns(pl.col("ts").dt.date().alias("event_date"))
    return conform(frame, INTERACTION_SCHEMA)


def same_rows(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    key = list(INTERACTION_SCHEMA)
    return a.sort(key).equals(b.sort(key))


def test_temporal_split_has_no_leakage_and_keeps_every_row():
    inter = make_interactions()
    split = temporal_split(inter, valid_frac=0.1, test_frac=0.2)
    assert split.train["ts"].max() < split.valid["ts"].min()
    assert split.valid["ts"].max() < split.test["ts"].min()
    assert same_rows(pl.concat([split.train, split.valid, split.test]), inter)
    p = split.params
    assert p["protocol"] == "temporal_quantile"
    assert p["n_train_rows"] + p["n_valid_rows"] + p["n_test_rows"] == inter.height
    # cuts sit on observed timestamps: rows at the cut belong to the later part
    assert str(split.valid["ts"].min()) == p["t_valid_start"]
    assert str(split.test["ts"].min()) == p["t_test_start"]
    # ties move at most one timestamp's worth of rows across a cut
    max_tie = inter.group_by("ts").len()["len"].max()
    assert abs(p["n_test_rows"] - 0.2 * inter.height) <= max_tie
    assert abs(p["n_valid_rows"] - 0.1 * inter.height) <= 2 * max_tie


def test_temporal_split_without_valid_window():
    inter = make_interactions(seed=1)
    split = temporal_split(inter, valid_frac=0.0, test_frac=0.25)
    assert split.valid.height == 0
    assert split.train["ts"].max() < split.test["ts"].min()
    history, target = split.fold("test")
    assert same_rows(history, split.train) and same_rows(target, split.test)


def test_temporal_split_rejects_bad_fractions():
    with pytest.raises(ValueError, match="sum < 1"):
        temporal_split(make_interactions(), valid_frac=0.5, test_frac=0.5)


def test_leave_last_out_orders_each_user():
    inter = make_interactions(seed=2)
    # a user with two interactions only must stay entirely in train
    short = inter.head(2).with_columns(pl.lit(10_000, dtype=pl.Int64).alias("user_id"))
    inter = pl.concat([inter, short])
    split = leave_last_out_split(inter)
    assert same_rows(pl.concat([split.train, split.valid, split.test]), inter)

    counts = inter.group_by("user_id").len()
    eligible = set(counts.filter(pl.col("len") >= 3)["user_id"])
    assert set(split.test["user_id"]) == eligible == set(split.valid["user_id"])
    assert split.test["user_id"].is_unique().all() and split.valid["user_id"].is_unique().all()
    assert 10_000 not in set(split.test["user_id"]) and (split.train["user_id"] == 10_000).sum() == 2

    last_train = split.train.group_by("user_id").agg(pl.col("ts").max().alias("train_max"))
    per_user = (
        split.valid.select("user_id", pl.col("ts").alias("valid_ts"))
        .join(split.test.select("user_id", pl.col("ts").alias("test_ts")), on="user_id")
        .join(last_train, on="user_id")
    )
    assert (per_user["train_max"] <= per_user["valid_ts"]).all()
    assert (per_user["valid_ts"] <= per_user["test_ts"]).all()
    assert split.params["protocol"] == "leave_last_out"
    assert split.params["n_test_rows"] == len(eligible)
    assert split.params["n_users_kept_in_train"] == 1


def test_leave_last_out_breaks_timestamp_ties_by_row_order():
    ts = datetime(2024, 1, 1)
    inter = make_interactions(n_rows=4).with_columns(
        pl.lit(1, dtype=pl.Int64).alias("user_id"),
        pl.Series("item_id", [10, 11, 12, 13], dtype=pl.Int64),
        pl.lit(ts).cast(pl.Datetime("us")).alias("ts"),
    )
    split = leave_last_out_split(inter)
    assert split.test["item_id"].to_list() == [13]
    assert split.valid["item_id"].to_list() == [12]
    assert split.train["item_id"].to_list() == [10, 11]


def test_files_split_validates_and_folds():
    inter = make_interactions(seed=3)
    train, valid, test = inter[:2000], inter[2000:2500], inter[2500:]
    split = files_split(train, valid, test, source="ml-100k.*.inter")
    assert isinstance(split, Split)
    assert split.params["protocol"] == "files" and split.params["source"] == "ml-100k.*.inter"
    assert split.params["n_train_rows"] == 2000 and split.params["n_test_rows"] == inter.height - 2500
    history, target = split.fold("test")
    assert history.height == 2500 and same_rows(target, test)
    history, target = split.fold("valid")
    assert same_rows(history, train) and same_rows(target, valid)
    with pytest.raises(ValueError, match="unknown fold"):
        split.fold("train")
    with pytest.raises(ValueError, match="files_split valid.*'ts'"):
        files_split(train, valid.drop("ts"), test)


def test_relevant_filters_positives_and_deduplicates():
    inter = make_interactions(seed=4)
    doubled = pl.concat([inter, inter])
    truth = relevant(doubled, pl.col("value") >= 4)
    assert truth.columns == ["user_id", "item_id"]
    expected = inter.filter(pl.col("value") >= 4).select("user_id", "item_id").unique()
    assert truth.height == expected.height
    assert truth.sort(["user_id", "item_id"]).equals(expected.sort(["user_id", "item_id"]))
    assert relevant(inter).height == inter.select("user_id", "item_id").unique().height


def test_drop_cold_removes_users_and_items_unseen_in_history():
    history = make_interactions(n_rows=50, n_users=5, n_items=5, seed=5)
    truth = pl.DataFrame({"user_id": [0, 0, 99], "item_id": [0, 999, 0]})
    assert drop_cold(truth, history).sort("item_id")["user_id"].to_list() == [0, 0]
    assert drop_cold(truth, history, items=True).rows() == [(0, 0)]
