"""The rankers' training budget (RankerDatasetConfig.max_train_users) and the channel search's user budget
(ChannelConfig.max_search_users): seeded uniform samples of whole users, the same users whatever their ids, everyone when they fit."""

import datetime as dt

import polars as pl

from assets.rankers import RankerDatasetConfig, _train_users


def _fold(n_users: int, offset: int = 0):
    t0 = dt.datetime(2024, 1, 1)
    history = pl.DataFrame(
        {
            "user_id": [offset + u for u in range(n_users)],
            "item_id": [1] * n_users,
            "ts": [t0 + dt.timedelta(minutes=u) for u in range(n_users)],
            "seq": list(range(n_users)),
        }
    )
    # the valid window: only even users have an event there (odd ones stay eligible through their history)
    target = history.filter(pl.col("user_id") % 2 == offset % 2).with_columns(pl.col("ts") + dt.timedelta(days=10))
    pool = pl.DataFrame({"user_id": [offset + u for u in range(n_users) for _ in range(3)], "item_id": [2, 3, 4] * n_users})
    return pool, history, target


def test_every_user_is_kept_within_the_budget():
    pool, history, target = _fold(40)
    kept, sample = _train_users(pool, history, target, RankerDatasetConfig(max_train_users=40))
    assert kept.equals(pool) and not sample.sampled


def test_past_the_budget_a_seeded_sample_of_whole_users_independent_of_ids():
    pool, history, target = _fold(40)
    kept, sample = _train_users(pool, history, target, RankerDatasetConfig(max_train_users=10, seed=3))
    users = kept["user_id"].unique()
    assert users.len() == 10 and sample.n_sampled == 10 and sample.n_users == 40
    assert kept.group_by("user_id").len()["len"].to_list() == [3] * 10  # whole candidate lists
    assert (users % 2 == 1).any()  # users without a valid-window event are eligible too
    again, _ = _train_users(pool, history, target, RankerDatasetConfig(max_train_users=10, seed=3))
    assert again.equals(kept)
    other, _ = _train_users(pool, history, target, RankerDatasetConfig(max_train_users=10, seed=4))
    assert not other.equals(kept)
    # relabelled ids (shifted by 1000, same event order): the same positions are drawn
    pool2, history2, target2 = _fold(40, offset=1000)
    relabelled, _ = _train_users(pool2, history2, target2, RankerDatasetConfig(max_train_users=10, seed=3))
    assert sorted(relabelled["user_id"].unique() - 1000) == sorted(users)


def test_channel_search_scores_a_seeded_sample_of_valid_users_past_its_budget():
    from assets.candidates import _search_users

    _, history, target = _fold(40)
    users = target["user_id"].unique().sort()
    assert _search_users(users, target, 0).equals(users) and _search_users(users, target, 20).equals(users)
    kept = _search_users(users, target, 5)
    assert kept.len() == 5 and kept.is_sorted() and kept.is_in(users.implode()).all()
    assert _search_users(users, target, 5).equals(kept)
