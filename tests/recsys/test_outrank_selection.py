"""OutRank against the rankers' label: the train-only input rows, 3MR's selection, and lgbm_ranker's
choice between the MI and 3MR feature lists on held-out valid users."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from recsys.event_features import finish_outrank_rows, item_categories, label_window_start, outrank_row_params, select_features_3mr
from recsys.outrank import rank_features
from recsys.outrank.controls import CONTROL_PREFIX, add_control_features
from recsys.rankers.lgbm import LGBMRanker, fit_feature_sets
from resources.engine import SqlEngine

T0 = dt.datetime(2024, 1, 1)


def _train(n_users: int = 60, n_items: int = 80, days: int = 40, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n = 4000
    day = rng.integers(0, days, n)
    return pl.DataFrame(
        {
            "user_id": rng.integers(1, n_users + 1, n),
            "item_id": (rng.zipf(1.5, n) % n_items) + 1,
            "ts": [T0 + dt.timedelta(days=int(d), seconds=int(s)) for d, s in zip(day, rng.integers(0, 86_400, n))],
            "seq": np.arange(n),
        }
    ).sort("ts", "seq")


def outrank_rows(train, users, items, start, negatives_per_positive=10, seed=0, max_rows=None, engine=None) -> pl.DataFrame:
    """OutRank's input as event_features builds it: sql/features/outrank_rows.sql over in-memory frames
    (an in-memory DuckDB unless ``engine`` says otherwise), then finish_outrank_rows."""
    frames = {
        "staging.split": train.with_columns(pl.lit("train").alias("fold")),
        "features.outrank_item_categories": item_categories(items),
    }
    params = outrank_row_params(start, negatives_per_positive, seed, max_rows)
    raw = (engine or SqlEngine(engine="duckdb")).query_frames("features/outrank_rows", frames, params)
    return finish_outrank_rows(raw, users, items)


def _catalog(n_users: int = 60, n_items: int = 80):
    users = pl.DataFrame(
        {
            "user_id": list(range(1, n_users + 1)),
            "age": [18 + u % 50 for u in range(n_users)],
            "zip": [f"{u % 7}123" for u in range(n_users)],
        }
    )
    items = pl.DataFrame(
        {
            "item_id": list(range(1, n_items + 1)),
            "category_id": [i % 5 for i in range(n_items)],
            "title": [f"t{i}" for i in range(n_items)],
            "genres": [f"g{i % 4}|g{i % 3}" for i in range(n_items)],
        }
    )
    return users, items


def test_label_window_is_the_end_of_train_and_labels_are_its_pairs():
    train = _train()
    users, items = _catalog()
    start = label_window_start(train, window_days=7)
    assert train["ts"].min() < start <= train["ts"].max()
    assert start == train["ts"].max() - dt.timedelta(days=7)
    rows = outrank_rows(train, users, items, start, negatives_per_positive=5, seed=1)
    assert rows.height and 0 < rows["label"].sum() < rows.height

    before, window = train.filter(pl.col("ts") < start), train.filter(pl.col("ts") >= start)
    in_window = set(window.select("user_id", "item_id").iter_rows())
    seen = set(before.select("user_id", "item_id").iter_rows())
    pairs = list(zip(rows["user_id_raw"].to_list(), rows["item_id_raw"].to_list()))
    assert len(set(pairs)) == len(pairs)  # one row per pair
    assert [int(p in in_window) for p in pairs] == rows["label"].to_list()  # label = the pair occurs in the window
    assert not set(pairs) & seen  # like the candidate pool: never an item the user had already seen
    # every user has history before the window and a positive in it; every positive pair is there
    assert set(rows["user_id_raw"]) <= set(before["user_id"]) & set(window["user_id"])
    expected = {p for p in in_window - seen if p[0] in set(before["user_id"]) and p[1] in set(before["item_id"])}
    assert {p for p, y in zip(pairs, rows["label"]) if y} == expected
    # about negatives_per_positive negatives per positive, drawn among items known before the window
    negatives = rows.filter(pl.col("label") == 0)
    assert set(negatives["item_id_raw"]) <= set(before["item_id"])
    assert 4 * len(expected) <= negatives.height <= 5 * len(expected)
    # features are measured before the window: activity is the user's history size
    activity = before.group_by("user_id").len()
    joined = rows.join(activity, left_on="user_id_raw", right_on="user_id")
    assert (joined["beh_user_activity"] == (1 + joined["len"]).log(2).floor().cast(pl.Int32)).all()
    assert {"category_id", "age", "zip", "genres", "beh_recency", "ctx_hour"} <= set(rows.columns) and "title" not in rows.columns


def test_outrank_rows_are_seeded_and_capped_by_whole_users():
    train = _train()
    users, items = _catalog()
    start = label_window_start(train, window_days=7)
    a = outrank_rows(train, users, items, start, seed=3)
    assert a.equals(outrank_rows(train, users, items, start, seed=3))
    assert not a.equals(outrank_rows(train, users, items, start, seed=4))
    capped = outrank_rows(train, users, items, start, seed=3, max_rows=a.height // 2)
    assert 0 < capped.height <= a.height // 2
    # whole users: a kept user keeps all of its rows
    kept = a.filter(pl.col("user_id_raw").is_in(capped["user_id_raw"].unique().implode()))
    assert kept.height == capped.height


def test_label_window_falls_back_to_a_fraction_and_keeps_history():
    train = _train()
    start = label_window_start(train, window_days=None, window_frac=0.1)
    share = train.filter(pl.col("ts") >= start).height / train.height
    assert 0.08 < share < 0.12
    # a window longer than train is cut so that at least half of train stays history
    start = label_window_start(train, window_days=1000)
    assert train.filter(pl.col("ts") < start).height >= train.height // 2


def _planted(rows: int = 6000, seed: int = 0) -> pl.DataFrame:
    """label driven by a and b; a_twin is a near copy of a (redundant), c is noise."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 8, rows)
    b = rng.integers(0, 5, rows)
    logit = np.linspace(-2, 2, 8)[a] + np.linspace(-1, 1, 5)[b]
    label = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    a_twin = np.where(rng.random(rows) < 0.9, a, rng.integers(0, 8, rows))
    return pl.DataFrame(
        {"label": label, "a": a, "a_twin": a_twin, "b": b, "c": rng.integers(0, 6, rows), "user_id_raw": rng.permutation(rows)}
    )


def test_3mr_selects_relevant_features_with_planted_redundancy():
    frame = _planted()
    usable = ["a", "a_twin", "b", "c"]
    with_controls = add_control_features(frame, usable, seed=0)
    ranking = rank_features(with_controls, "label", heuristic="3MR", features=usable + [CONTROL_PREFIX + f for f in usable])
    chosen = select_features_3mr(ranking)
    assert chosen, "3MR selected nothing"
    assert chosen[:2] == ["a", "b"] and not any(f.startswith(CONTROL_PREFIX) for f in chosen)
    # the redundant twin is penalized: picked after b, the weaker but non-redundant feature, though
    # its own relevance is three times b's; pure noise comes after both
    order = ranking["feature"].to_list()
    relevance = dict(zip(ranking["feature"], ranking["relevance"]))
    assert relevance["a_twin"] > 2 * relevance["b"] and order.index("b") < order.index("a_twin") < order.index("c")
    # leaking/constant features flagged by the quality report are dropped
    quality = pl.DataFrame({"feature": ["b"], "leakage": [True], "is_constant": [False]})
    assert "b" not in select_features_3mr(ranking, quality)


def test_3mr_selection_stops_at_the_first_control_and_drops_raw_ids():
    ranking = pl.DataFrame({"feature": ["x_raw", "a", "control__a", "b"], "rank": [1, 2, 3, 4], "heuristic": ["3MR"] * 4})
    assert select_features_3mr(ranking) == ["a"]


def _ranker_frame(n_users: int = 200, per_user: int = 20, seed: int = 0) -> pl.DataFrame:
    """cat__good drives the label; cat__bad is noise; channel features carry a little signal."""
    rng = np.random.default_rng(seed)
    n = n_users * per_user
    good = rng.integers(0, 4, n)
    noise = rng.normal(size=n)
    p = 1 / (1 + np.exp(-(2.5 * (good == 3) - 2.0 + 0.3 * noise)))
    label = (rng.random(n) < p).astype(np.int32)
    return pl.DataFrame(
        {
            "user_id": np.repeat(np.arange(n_users), per_user),
            "item_id": np.tile(np.arange(per_user), n_users),
            "chan__norm": noise,
            "cat__good": good.astype(np.int32),
            "cat__bad": rng.integers(0, 4, n).astype(np.int32),
            "label": label,
        }
    )


def test_lgbm_keeps_the_feature_list_with_the_higher_held_out_score():
    frame = _ranker_frame()
    params = {"n_estimators": 60, "early_stopping_rounds": 10, "min_data_in_leaf": 10}
    sets = {"mi": ["chan__norm", "cat__bad"], "3mr": ["chan__norm", "cat__good"]}
    choice = fit_feature_sets(frame, sets, params, [{}, {"num_leaves": 7}])
    assert choice.scores["3mr"] > choice.scores["mi"]
    assert choice.selection == "3mr" and "cat__good" in choice.model.feature_cols
    assert choice.model.valid_ndcg10 == choice.scores["3mr"]
    assert choice.tried.height == 4 and set(choice.tried["selection"]) == {"mi", "3mr"}
    # order does not matter, the score does
    flipped = fit_feature_sets(frame, {"3mr": sets["3mr"], "mi": sets["mi"]}, params, [{}])
    assert flipped.selection == "3mr"


def test_lgbm_identical_lists_are_fitted_once_and_tie_to_the_first():
    frame = _ranker_frame(n_users=80)
    cols = ["chan__norm", "cat__good"]
    choice = fit_feature_sets(frame, {"mi": cols, "3mr": list(cols)}, {"n_estimators": 20}, [{}])
    assert choice.selection == "mi" and choice.scores["mi"] == choice.scores["3mr"]


def test_only_the_winner_is_refit_and_it_equals_a_plain_fit_of_its_setting():
    frame = _ranker_frame()
    params = {"n_estimators": 60, "early_stopping_rounds": 10, "min_data_in_leaf": 10}
    sets = {"mi": ["chan__norm", "cat__bad"], "3mr": ["chan__norm", "cat__good"]}
    choice = fit_feature_sets(frame, sets, params, [{}, {"num_leaves": 7}])
    plain = LGBMRanker(choice.params).fit(frame, feature_cols=choice.model.feature_cols)  # fit + refit_full, as before
    assert choice.model.best_iteration == plain.best_iteration and choice.model.valid_ndcg10 == plain.valid_ndcg10
    np.testing.assert_array_equal(choice.model.predict(frame), plain.predict(frame))
    assert choice.model.holdout_scores.equals(plain.holdout_scores)
    # the refit happened (the early-stopping model differs from the one refit on every labelled user)
    early = LGBMRanker(choice.params).fit(frame, feature_cols=choice.model.feature_cols, refit=False)
    assert not np.array_equal(early.predict(frame), plain.predict(frame))
    assert early.refit_on(frame).refit_on(frame).best_iteration == plain.best_iteration  # a second refit_on is a no-op
    np.testing.assert_array_equal(early.predict(frame), plain.predict(frame))
