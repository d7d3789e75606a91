"""The valid fold's user budget (RECDAG_TRAIN_USERS, assets.common.fold_users / fold_sample), which bounds every
channel's valid candidates, the pool and the rankers' training frame, and the channel search's user budget
(ChannelConfig.max_search_users): seeded uniform samples of whole users, the same users whatever their ids,
everyone (exactly ``target_users``) when they fit."""

import datetime as dt

import polars as pl
import pytest

from assets.common import fold_sample, fold_users, target_users
from assets.rankers import _train_users


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
    # the valid window: even users have an event there, in reverse id order (so first appearance is not id order)
    target = (
        history.filter(pl.col("user_id") % 2 == offset % 2)
        .with_columns(pl.col("ts").reverse() + dt.timedelta(days=10), pl.col("seq") + n_users)
        .vstack(pl.DataFrame({"user_id": [offset + n_users], "item_id": [1], "ts": [t0 + dt.timedelta(days=11)], "seq": [3 * n_users]}))
    )  # ... plus one cold user (no history)
    pool = pl.DataFrame({"user_id": [offset + u for u in range(n_users) for _ in range(3)], "item_id": [2, 3, 4] * n_users})
    return pool, history, target


def test_fold_users_are_target_users_within_the_budget(monkeypatch):
    _, history, target = _fold(80)  # 40 warm valid users, 1 cold
    for budget in (None, "41"):  # 41: every target user, cold one included (the files protocol)
        monkeypatch.delenv("RECDAG_TRAIN_USERS", raising=False) if budget is None else monkeypatch.setenv("RECDAG_TRAIN_USERS", budget)
        for fold in ("valid", "test"):
            assert fold_users(fold, target, history).equals(target_users(target, history))
            assert fold_users(fold, target, history, every_user=True).equals(target_users(target, history))
        users, sample = fold_sample("valid", target, history)
        assert not sample.sampled and sample.describe("valid users") == "all 40 valid users"
        assert fold_sample("valid", target, history, every_user=True)[0].len() == 41  # files protocol: the cold user too


def test_past_the_budget_the_valid_fold_is_a_seeded_sample_independent_of_ids(monkeypatch):
    pool, history, target = _fold(80)
    monkeypatch.setenv("RECDAG_TRAIN_USERS", "10")
    everyone = target_users(target, history)
    users, sample = fold_users("valid", target, history, with_sample=True)
    assert users.len() == 10 and users.is_sorted() and users.is_in(everyone.implode()).all()
    assert sample.describe("valid users") == "10 of 40 valid users (seeded uniform sample, seed 0)"
    assert fold_users("valid", target, history).equals(users)  # seeded: the same users every call
    assert fold_users("test", target, history).equals(everyone)  # the test fold is never sampled
    # relabelled ids (shifted by 1000, same event order): the same positions are drawn
    _, history2, target2 = _fold(80, offset=1000)
    assert (fold_users("valid", target2, history2) - 1000).equals(users)
    # a larger budget draws from the same order with the same seed, so samples differ but stay seeded
    monkeypatch.setenv("RECDAG_TRAIN_USERS", "20")
    assert fold_users("valid", target, history).len() == 20
    # the rankers' frame: whole candidate lists of exactly those users
    monkeypatch.setenv("RECDAG_TRAIN_USERS", "10")
    kept, info = _train_users(pool, history, target)
    assert kept["user_id"].unique().sort().equals(users) and kept.group_by("user_id").len()["len"].to_list() == [3] * 10
    assert info == sample
    monkeypatch.delenv("RECDAG_TRAIN_USERS")
    kept, info = _train_users(pool, history, target)
    assert kept.equals(pool) and not info.sampled


def test_files_protocol_samples_every_target_user_and_lists_the_warm_ones(monkeypatch):
    _, history, target = _fold(80)
    monkeypatch.setenv("RECDAG_TRAIN_USERS", "30")
    evaluated, sample = fold_sample("valid", target, history, every_user=True)
    assert evaluated.len() == 30 and sample.n_users == 41
    listed = fold_users("valid", target, history, every_user=True)
    assert listed.equals(evaluated.filter(evaluated.is_in(target_users(target, history).implode())))


def test_budget_setting_is_a_positive_whole_number(monkeypatch):
    from resources import settings

    monkeypatch.delenv("RECDAG_TRAIN_USERS", raising=False)
    assert settings.train_users() == 20_000
    monkeypatch.setenv("RECDAG_TRAIN_USERS", "0")
    with pytest.raises(ValueError, match="RECDAG_TRAIN_USERS"):
        settings.train_users()


def test_channel_search_scores_a_seeded_sample_of_valid_users_past_its_budget():
    from assets.candidates import _search_users

    _, history, target = _fold(40)
    users = target_users(target, history)
    assert _search_users(users, target, 0).equals(users) and _search_users(users, target, 20).equals(users)
    kept = _search_users(users, target, 5)
    assert kept.len() == 5 and kept.is_sorted() and kept.is_in(users.implode()).all()
    assert _search_users(users, target, 5).equals(kept)


def _frame_warehouse(tmp_path, target: pl.DataFrame, frame: pl.DataFrame):
    """A real warehouse holding what _labelled_rows_within reads: the frame table and the valid fold's events."""
    from resources.warehouse import Warehouse

    wh = Warehouse(data_dir=str(tmp_path))
    with wh.connect() as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS features; CREATE SCHEMA IF NOT EXISTS staging")
        con.register("f", frame.to_arrow())
        con.execute("CREATE OR REPLACE TABLE features.ranker_valid AS SELECT * FROM f")
        con.register("t", target.with_columns(pl.lit("valid").alias("fold")).to_arrow())
        con.execute(
            "CREATE OR REPLACE TABLE staging.split AS SELECT user_id, item_id, 'rate' AS event_type, 1.0 AS value, ts, "
            "CAST(ts AS DATE) AS event_date, NULL::BIGINT AS session_id, 'test' AS source, seq, fold FROM t"
        )
    return wh


def test_lgbm_trains_on_whole_labelled_lists_within_its_row_budget(tmp_path):
    from assets.rankers import _labelled_rows_within

    _, history, target = _fold(80)  # 40 valid users (even ids), one event each
    frame = pl.DataFrame(
        {
            "user_id": [u for u in range(80) for _ in range(3)],
            "item_id": [2, 3, 4] * 80,
            "label": [int(u % 2 == 0 and i == 0) for u in range(80) for i in range(3)],  # even users have a positive
        }
    )
    labelled = frame.filter(pl.col("user_id") % 2 == 0)  # only lists with a positive leave DuckDB
    wh = _frame_warehouse(tmp_path / "a", target, frame)
    same, said = _labelled_rows_within(wh, "features.ranker_valid", 0)
    assert same.equals(labelled) and said == "all 120 rows of labelled lists (40 users with a positive)"
    assert _labelled_rows_within(wh, "features.ranker_valid", 120)[0].equals(labelled)
    kept, said = _labelled_rows_within(wh, "features.ranker_valid", 30)
    users = kept["user_id"].unique()
    assert kept.height == 30 and users.len() == 10 and (users % 2 == 0).all()  # whole labelled lists only
    assert kept.group_by("user_id").len()["len"].to_list() == [3] * 10
    assert said == "30 of 120 rows of labelled lists (10 of 40 users with a positive; seeded uniform sample, seed 0)"
    # relabelled ids, same event order: the same users by position
    _, _, target2 = _fold(80, offset=1000)
    wh2 = _frame_warehouse(tmp_path / "b", target2, frame.with_columns(pl.col("user_id") + 1000))
    kept2, _ = _labelled_rows_within(wh2, "features.ranker_valid", 30)
    assert kept2.with_columns(pl.col("user_id") - 1000).equals(kept)
