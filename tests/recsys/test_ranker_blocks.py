"""iter_ranker_frames: the ranker frame built per block of users is exactly build_ranker_frame's frame
(same rows, columns, dtypes and values once the blocks are concatenated), for every cut-off mode."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from recsys.schema import INTERACTION_SCHEMA, conform
from resources.ranker_frames import build_ranker_frame, iter_ranker_frames

T0 = dt.datetime(2024, 1, 1)


def _world(seed: int = 0, n_users: int = 40, n_items: int = 60):
    """Mixed event types with ratings, coarse times (ties), items without a category or history, users
    without history, list- and scalar-valued attributes, a graded target."""
    rng = np.random.default_rng(seed)
    n = 900
    kinds = rng.choice(["click", "rate", "cart", "buy", "view", "fav"], n, p=[0.4, 0.25, 0.1, 0.1, 0.1, 0.05])
    hist_users = rng.integers(1, n_users - 4, n) * 3  # ids not contiguous; the last users have no history
    history = pl.DataFrame(
        {
            "user_id": hist_users.astype(np.int64),
            "item_id": (100 + rng.integers(0, n_items - 8, n)).astype(np.int64),  # the last 8 items: never in history
            "event_type": kinds,
            "value": [float(rng.integers(1, 6)) if k == "rate" else 1.0 for k in kinds],
            "ts": [T0 + dt.timedelta(hours=int(h)) for h in rng.integers(0, 24 * 40, n)],
            "session_id": [None] * n,
            "source": ["test"] * n,
        }
    ).with_columns(pl.col("ts").cast(pl.Datetime("us")))
    history = conform(history.with_columns(pl.col("ts").dt.date().alias("event_date")), INTERACTION_SCHEMA)
    item_ids = 100 + np.arange(n_items)
    items = pl.DataFrame(
        {
            "item_id": item_ids,
            "category_id": [None if i % 7 == 0 else int(i % 5) for i in item_ids],
            "genres": [["Drama", "Comedy", "War"][i % 3 :] for i in range(n_items)],
        },
        schema={"item_id": pl.Int64, "category_id": pl.Int64, "genres": pl.List(pl.Utf8)},
    )
    all_users = np.arange(1, n_users + 1) * 3
    users = pl.DataFrame({"user_id": all_users, "age_bucket": rng.integers(0, 4, n_users)})
    cu, ci = [], []
    for u in rng.permutation(all_users):  # the pool in no particular user order
        chosen = rng.choice(item_ids, 15, replace=False)
        cu += [int(u)] * len(chosen)
        ci += chosen.tolist()
    pool = pl.DataFrame({"user_id": np.array(cu, np.int64), "item_id": np.array(ci, np.int64)})
    for c in ("a", "b"):
        kept = rng.random(pool.height) < (1.0 if c == "a" else 0.5)
        pool = pool.with_columns(pl.Series(f"{c}__score", np.where(kept, rng.normal(size=pool.height), np.nan)).fill_nan(None))
        pool = pool.with_columns(pl.col(f"{c}__score").rank("ordinal", descending=True).over("user_id").cast(pl.Int32).alias(f"{c}__rank"))
    pool = pool.with_columns(
        pl.sum_horizontal(pl.col("a__rank").is_not_null(), pl.col("b__rank").is_not_null()).cast(pl.Int32).alias("n_channels")
    )
    label_rows = pool.sample(60, seed=seed)
    target = history.head(60).with_columns(
        label_rows["user_id"].alias("user_id"),
        label_rows["item_id"].alias("item_id"),
        pl.col("ts").dt.offset_by("60d"),
    )
    return pool, history, items, users, target


def _cutoffs(history: pl.DataFrame) -> dict[str, object]:
    last = history.group_by("user_id").agg(pl.col("ts").max().dt.offset_by("-3d").alias("cutoff"))
    return {
        "global": None,
        "date": T0 + dt.timedelta(days=30),
        "per_user": "per_user",
        "frame": last.filter(pl.col("user_id") % 2 == 0),  # users absent from the frame: history's max ts
    }


@pytest.mark.parametrize("mode", ["global", "date", "per_user", "frame"])
@pytest.mark.parametrize("block", [1, 7, 1000])
def test_blocks_concatenate_to_the_whole_frame(mode, block):
    pool, history, items, users, target = _world()
    cutoff = _cutoffs(history)[mode]
    kwargs = {"target": target, "cutoff": cutoff, "label_mode": "graded"}
    whole = build_ranker_frame(pool, history, items, users, ["age_bucket", "genres"], **kwargs)
    blocks = list(iter_ranker_frames(pool, history, items, users, ["age_bucket", "genres"], **kwargs, block_users=block))
    n_users = pool["user_id"].n_unique()
    assert len(blocks) == -(-n_users // block)
    assert all(b["user_id"].n_unique() <= block for b in blocks)
    assert all(b.schema == whole.schema for b in blocks)
    assert_frame_equal(pl.concat(blocks), whole, check_exact=True)
    # the features are not all null: the comparison means something
    assert whole["ui_cooc_last3"].drop_nulls().sum() > 0 and whole["i_mean_rating"].null_count() < whole.height
    assert whole["label"].sum() > 0 and whole["cat__genres"].null_count() == 0


def test_blocks_without_target_or_features_and_an_empty_pool():
    pool, history, items, _, _ = _world(seed=1)
    whole = build_ranker_frame(pool, history, items, None, cutoff="per_user", raw_scores=True)
    assert_frame_equal(pl.concat(iter_ranker_frames(pool, history, items, None, cutoff="per_user", raw_scores=True, block_users=5)), whole)
    empty = list(iter_ranker_frames(pool.clear(), history, items, None, cutoff="per_user", raw_scores=True, block_users=5))
    assert len(empty) == 1 and empty[0].height == 0 and empty[0].schema == whole.schema
