"""Stacked training windows: which earlier cut-offs may be stacked, how their rows are shaped, that LightGBM
trains on them without holding them out or scoring them, and the archive on disk."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from recsys.rankers.features import grouped_ndcg_at_k
from recsys.rankers.lgbm import LGBMRanker, LGBMRankerParams, _group_sizes
from recsys.rankers.stacking import Window, eligible, label_window, stacked_rows, within_budget
from resources.training_windows import TrainingWindows

D = dt.datetime


def test_label_window_only_for_time_cut_splits():
    temporal = {"protocol": "temporal", "t_valid_start": "1998-03-10 00:00:00", "t_test_start": "1998-04-01 00:00:00"}
    assert label_window(temporal) == (D(1998, 3, 10), D(1998, 4, 1))
    assert label_window({"protocol": "leave_last_out"}) is None
    assert label_window({"protocol": "files", "source": "/x"}) is None


def test_eligible_windows_end_before_the_current_labels_begin_newest_first():
    ws = [Window(D(2024, 1, s), D(2024, 1, e), pl.DataFrame()) for s, e in [(1, 8), (8, 15), (15, 22), (22, 29)]]
    current = (D(2024, 1, 22), D(2024, 1, 29))  # the last archived window is the current one itself
    assert [w.end.day for w in eligible(ws, current, 2)] == [22, 15]
    assert [w.end.day for w in eligible(ws, current, 10)] == [22, 15, 8]
    assert eligible(ws, current, 0) == []
    # a later cut-off (a backfill run out of order) and an overlapping one are never stacked
    assert eligible(ws, (D(2024, 1, 10), D(2024, 1, 17)), 5) == [ws[0]]


def test_within_budget_keeps_the_newest_windows_that_fit_and_never_skips_one():
    ws = [Window(D(2024, 1, 1), D(2024, 1, e), pl.DataFrame()) for e in (29, 22, 15)]  # newest first
    assert within_budget(ws, [40, 30, 10], 75) == ws[:2]
    assert within_budget(ws, [40, 50, 10], 75) == ws[:1]  # the third fits, but an older window never replaces a newer
    assert within_budget(ws, [40, 30, 10], 0) == []


def test_stacked_rows_are_shaped_like_the_frame_one_query_per_window_and_user():
    frame = pl.DataFrame(
        {"user_id": [7], "item_id": [1], "a__rank": [1.0], "i_pop": [3], "cat__genre": pl.Series([2], dtype=pl.Int32), "label": [1]}
    )
    older = pl.DataFrame(  # user 5 has no positive: dropped; a__rank as an integer column; no i_pop
        {
            "user_id": [5, 9, 9, 7],
            "item_id": [1, 2, 1, 3],
            "a__rank": [1, 2, 1, 4],
            "cat__genre": pl.Series([0, 0, 1, 1], dtype=pl.Int32),
            "label": [0, 0, 1, 2],
        }
    )
    newer = pl.DataFrame({"user_id": [9], "item_id": [4], "a__rank": [3.0], "i_pop": [1], "label": [1]})
    out = stacked_rows(frame, [older, pl.DataFrame(), newer.lazy()])
    assert out.schema == frame.schema
    # window 1: user 7 -> -1, user 9 -> -2 (items in order); window 2: user 9 -> -3
    assert out["user_id"].to_list() == [-1, -2, -2, -3]
    assert out["item_id"].to_list() == [3, 1, 2, 4]
    assert out["a__rank"].to_list() == [4.0, 1.0, 2.0, 3.0]
    assert out["i_pop"].to_list() == [None, None, None, 1]  # absent from the older window: missing
    assert out["cat__genre"].null_count() == out.height  # codes are per window: missing, never re-used
    assert out["label"].to_list() == [2, 1, 0, 1]
    assert stacked_rows(frame, []) is None and stacked_rows(frame, [older.filter(pl.col("user_id") == 5)]) is None


def test_group_sizes_are_runs_in_row_order():
    assert _group_sizes(np.array([1, 1, 3, 3, 3, -2, -2, -1])).tolist() == [2, 3, 2, 1]
    assert _group_sizes(np.array([], dtype=np.int64)).tolist() == []


def _frame(seed: int, n_users: int, n_cand: int = 30) -> pl.DataFrame:
    """Candidate lists whose positives follow one noisy rule (an interaction of two features), rows in random
    order within each user (so ties never help): learnable, but not from a few dozen users."""
    rng = np.random.default_rng(seed)
    user = np.repeat(np.arange(1, n_users + 1), n_cand)
    x = rng.normal(size=(len(user), 4))
    latent = x[:, 0] * x[:, 1] + 0.5 * x[:, 2] + 0.7 * rng.normal(size=len(user))
    rank = pl.DataFrame({"u": user, "z": latent}).select(pl.col("z").rank("ordinal", descending=True).over("u"))["z"].to_numpy()
    return pl.DataFrame(
        {
            "user_id": user,
            "item_id": rng.permutation(len(user)) + 1,
            **{f"f{i}": x[:, i] for i in range(4)},
            "label": (rank <= 3).astype(np.int32),
        }
    ).sort("user_id", "item_id")


@pytest.fixture(scope="module")
def windows():
    """A small current window, two larger earlier ones with the same rule, and test users."""
    return _frame(0, 40), [_frame(1, 300), _frame(2, 300)], _frame(3, 400)


def test_lgbm_trains_on_stacked_windows_but_holds_out_and_scores_only_the_current_users(windows):
    current, earlier, test = windows
    params = LGBMRankerParams(n_estimators=300, early_stopping_rounds=30, min_data_in_leaf=20)
    alone = LGBMRanker(params).fit(current)
    extra = stacked_rows(current, earlier)
    stacked = LGBMRanker(params).fit(current, extra_train=extra)
    assert stacked.n_extra_lists == extra["user_id"].n_unique() > 0 and alone.n_extra_lists == 0
    # held out, early-stopped and scored out of fold: the current window's users only, as without stacking
    assert (
        stacked.holdout_scores.select("user_id", "item_id")
        .sort(pl.all())
        .equals(alone.holdout_scores.select("user_id", "item_id").sort(pl.all()))
    )
    assert stacked.n_valid_users == alone.n_valid_users and stacked.n_oof_users == alone.n_oof_users
    assert (stacked.holdout_scores["user_id"] > 0).all()
    # the earlier windows carry the same rule: more lists to learn it from
    g, y = test["user_id"].to_numpy(), test["label"].to_numpy()
    assert grouped_ndcg_at_k(g, y, stacked.predict(test)) > grouped_ndcg_at_k(g, y, alone.predict(test)) + 0.03  # 0.797 vs 0.734


def test_archive_keeps_one_file_per_window_and_key(tmp_path):
    archive = TrainingWindows(tmp_path)
    key, other = ("ml", "temporal", "temporal:window_days=22"), ("ml", "temporal", "temporal:window_days=7")
    rows = pl.DataFrame({"user_id": [1], "item_id": [2], "label": [1]})
    archive.save(key, (D(1998, 2, 16), D(1998, 3, 10)), rows)
    archive.save(key, (D(1998, 1, 25), D(1998, 2, 16)), rows)
    archive.save(key, (D(1998, 2, 16), D(1998, 3, 10)), rows.with_columns(pl.lit(5).alias("item_id")))  # a rerun replaces
    archive.save(other, (D(1998, 2, 16), D(1998, 3, 10)), rows)
    got = archive.windows(key)
    assert [(w.start, w.end) for w in got] == [(D(1998, 1, 25), D(1998, 2, 16)), (D(1998, 2, 16), D(1998, 3, 10))]
    assert got[1].rows.collect()["item_id"].to_list() == [5]
    assert archive.row_counts(got) == [1, 1] and len(archive.windows(other)) == 1
    assert archive.windows(("other", "x", "y")) == []
    assert not list((tmp_path / "training_windows").rglob(".tmp-*"))
    # only the newest `keep` windows stay (by the end of their labels)
    archive.save(key, (D(1998, 3, 10), D(1998, 4, 1)), rows, keep=2)
    assert [w.end for w in archive.windows(key)] == [D(1998, 3, 10), D(1998, 4, 1)]
