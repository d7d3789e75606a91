"""Rankers: leakage-free features, LambdaRank learning a planted rule, a sequence reranker learning
a planted next-category pattern, serialization and determinism."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from recsys.rankers.features import feature_columns, grouped_ndcg_at_k, holdout_users, user_slices
from recsys.rankers.lgbm import LGBMRanker, LGBMRankerParams
from recsys.runtime import TorchRuntime
from recsys.schema import INTERACTION_SCHEMA, RECOMMENDATION_SCHEMA, conform
from resources.ranker_frames import build_ranker_frame

pytestmark = pytest.mark.heavy(55)  # rough serial seconds of this module: scheduled first (tests/conftest.py)

T0 = dt.datetime(2024, 1, 1)
CUTOFF = T0 + dt.timedelta(days=30)
N_CATS, PER_CAT = 8, 25


def _interactions(users, items, ts, event_type="click", value=None) -> pl.DataFrame:
    n = len(users)
    frame = pl.DataFrame(
        {
            "user_id": np.asarray(users, np.int64),
            "item_id": np.asarray(items, np.int64),
            "event_type": [event_type] * n if isinstance(event_type, str) else list(event_type),
            "value": np.ones(n) if value is None else np.asarray(value, np.float64),
            "ts": list(ts),
            "session_id": [None] * n,
            "source": ["test"] * n,
        }
    ).with_columns(pl.col("ts").cast(pl.Datetime("us")))
    return conform(frame.with_columns(pl.col("ts").dt.date().alias("event_date")), INTERACTION_SCHEMA)


def _catalog() -> pl.DataFrame:
    item_ids = 1000 + np.arange(N_CATS * PER_CAT)
    return pl.DataFrame(
        {
            "item_id": item_ids,
            "category_id": np.arange(len(item_ids)) // PER_CAT,
            "title": [f"item {i}" for i in item_ids],
            "genres": [["Drama", "Comedy"][i % 2 :] for i in range(len(item_ids))],
        }
    )


def _days(rng, n, lo, hi):
    return [T0 + dt.timedelta(days=float(d)) for d in rng.uniform(lo, hi, n)]


def _pool(cand_users, cand_items, channel_scores: dict[str, np.ndarray], keep: dict[str, np.ndarray] | None = None) -> pl.DataFrame:
    """Pool frame with {c}__score / {c}__rank per channel (rank within user, null where not retrieved)."""
    pool = pl.DataFrame({"user_id": np.asarray(cand_users, np.int64), "item_id": np.asarray(cand_items, np.int64)})
    for c, s in channel_scores.items():
        kept = np.ones(len(s), bool) if keep is None or c not in keep else keep[c]
        pool = pool.with_columns(pl.Series(f"{c}__score", np.where(kept, s, np.nan)).fill_nan(None))
        pool = pool.with_columns(pl.col(f"{c}__score").rank("ordinal", descending=True).over("user_id").cast(pl.Int32).alias(f"{c}__rank"))
    return pool.with_columns(
        pl.sum_horizontal([pl.col(f"{c}__rank").is_not_null().cast(pl.Int32) for c in channel_scores]).alias("n_channels")
    )


def _taste_world(seed: int = 0, n_users: int = 300, n_cand: int = 40):
    """Users with a favourite category; label = candidate in that category AND channel a ranks it top 15."""
    rng = np.random.default_rng(seed)
    items = _catalog()
    users = pl.DataFrame({"user_id": np.arange(1, n_users + 1), "age_bucket": rng.integers(0, 5, n_users)})
    fav = rng.integers(0, N_CATS, n_users)
    n_hist = 20
    hu = np.repeat(np.arange(n_users), n_hist)
    in_fav = rng.random(len(hu)) < 0.7
    hcat = np.where(in_fav, fav[hu], rng.integers(0, N_CATS, len(hu)))
    hitem = 1000 + hcat * PER_CAT + rng.integers(0, PER_CAT, len(hu))
    history = _interactions(hu + 1, hitem, _days(rng, len(hu), 0, 29.9))

    cu = np.repeat(np.arange(n_users), n_cand)
    citem = np.concatenate([1000 + rng.choice(N_CATS * PER_CAT, n_cand, replace=False) for _ in range(n_users)])
    a = rng.normal(size=len(cu))
    b = rng.normal(size=len(cu))
    pool = _pool(cu + 1, citem, {"a": a, "b": b}, keep={"b": rng.random(len(cu)) < 0.5})
    a_rank = pool["a__rank"].to_numpy()
    positive = (((citem - 1000) // PER_CAT) == fav[cu]) & (a_rank <= 15)
    target = _interactions(cu[positive] + 1, citem[positive], _days(rng, positive.sum(), 30.5, 36))
    return pool, history, items, users, target


@pytest.fixture(scope="module")
def taste_world():
    return _taste_world()


@pytest.fixture(scope="module")
def taste_frames(taste_world):
    pool, history, items, users, target = taste_world
    frame = build_ranker_frame(pool, history, items, users, ["age_bucket", "genres"], target, cutoff=CUTOFF)
    test_users = frame["user_id"].unique().filter(pl.Series(holdout_users(frame["user_id"].unique(), 0.3, seed=7)))
    is_test = pl.col("user_id").is_in(test_users.implode())
    return frame.filter(~is_test), frame.filter(is_test)


# ---------------------------------------------------------------------------------------- features


def test_features_ignore_rows_at_or_after_cutoff_and_target(taste_world):
    pool, history, items, users, target = taste_world
    rng = np.random.default_rng(1)
    future = _interactions(rng.integers(1, 300, 500), 1000 + rng.integers(0, 200, 500), _days(rng, 500, 30, 40), "buy", np.full(500, 5.0))
    base = build_ranker_frame(pool, history, items, users, ["age_bucket"], cutoff=CUTOFF)
    leaky_history = build_ranker_frame(pool, pl.concat([history, future, target]), items, users, ["age_bucket"], cutoff=CUTOFF)
    with_label = build_ranker_frame(pool, history, items, users, ["age_bucket"], target=target, cutoff=CUTOFF)
    with_other_label = build_ranker_frame(pool, history, items, users, ["age_bucket"], target=future, cutoff=CUTOFF)
    assert base.equals(leaky_history)
    assert base.equals(with_label.drop("label"))
    assert base.equals(with_other_label.drop("label"))
    assert not with_label["label"].equals(with_other_label["label"])


def test_label_marks_exactly_the_target_pairs_and_grades_strength():
    items = _catalog()
    pool = _pool([1, 1, 1, 2, 2], [1000, 1001, 1002, 1000, 1003], {"a": np.array([3.0, 2.0, 1.0, 2.0, 1.0])})
    history = _interactions([1, 2], [1010, 1011], [T0, T0 + dt.timedelta(days=1)])
    target = _interactions(
        [1, 1, 1, 2, 3],
        [1000, 1000, 1002, 1003, 1000],
        [CUTOFF + dt.timedelta(hours=h) for h in range(5)],
        ["click", "buy", "rate", "rate", "click"],
        [1, 1, 5, 3, 1],
    )
    binary = build_ranker_frame(pool, history, items, None, [], target)
    graded = build_ranker_frame(pool, history, items, None, [], target, label_mode="graded")
    expected_binary = {(1, 1000): 1, (1, 1001): 0, (1, 1002): 1, (2, 1000): 0, (2, 1003): 1}
    expected_graded = {(1, 1000): 4, (1, 1001): 0, (1, 1002): 3, (2, 1000): 0, (2, 1003): 1}  # buy 4; rating 5 -> 3; 3 -> 1
    assert {(u, i): lab for u, i, lab in binary.select("user_id", "item_id", "label").iter_rows()} == expected_binary
    assert {(u, i): lab for u, i, lab in graded.select("user_id", "item_id", "label").iter_rows()} == expected_graded
    assert binary.height == pool.height  # target pairs outside the pool (user 3) add no rows


def test_user_item_features_match_a_hand_count():
    rng = np.random.default_rng(3)
    items = _catalog()
    n = 400
    hu, hi = rng.integers(1, 30, n), 1000 + rng.integers(0, 40, n)
    ts = [T0 + dt.timedelta(minutes=int(m)) for m in rng.permutation(n) * 60]
    history = _interactions(hu, hi, ts)
    cu, ci = np.repeat(np.arange(1, 31), 10), 1000 + rng.integers(0, 60, 300)
    pool = _pool(cu, ci, {"a": rng.normal(size=300)}).unique(["user_id", "item_id"])
    frame = build_ranker_frame(pool, history, items, None, [])

    rows = history.sort("ts", descending=True).rows(named=True)
    item_users: dict[int, set] = {}
    user_items: dict[int, list] = {}
    for r in rows:
        item_users.setdefault(r["item_id"], set()).add(r["user_id"])
        if r["item_id"] not in user_items.setdefault(r["user_id"], []):
            user_items[r["user_id"]].append(r["item_id"])  # most recent first, distinct
    cat = lambda item: (item - 1000) // PER_CAT  # noqa: E731
    for r in frame.rows(named=True):
        seq = user_items.get(r["user_id"])
        if seq is None:  # user 30 has no history
            assert r["ui_cooc_last1"] is None and r["ui_cat_share"] is None and r["u_n_events"] is None
            continue
        co = [len(item_users.get(a, set()) & item_users.get(r["item_id"], set())) for a in seq[:3]]
        assert r["ui_cooc_last1"] == co[0]
        assert r["ui_cooc_last3"] == sum(co)
        n_user = sum(1 for h in rows if h["user_id"] == r["user_id"])
        n_cat = sum(1 for h in rows if h["user_id"] == r["user_id"] and cat(h["item_id"]) == cat(r["item_id"]))
        assert r["ui_cat_share"] == pytest.approx(n_cat / n_user)
        assert r["ui_same_cat_last"] == int(cat(seq[0]) == cat(r["item_id"]))
        assert r["i_pop"] == sum(1 for h in rows if h["item_id"] == r["item_id"])


def test_grouped_ndcg_matches_ranx():
    from ranx import Qrels, Run, evaluate

    rng = np.random.default_rng(5)
    groups = np.repeat(np.arange(40), 25)
    labels = (rng.random(1000) < 0.1).astype(int)
    scores = rng.random(1000)
    qrels = {str(g): {str(i): 1 for i in np.nonzero((groups == g) & (labels > 0))[0]} for g in range(40)}
    qrels = {q: d for q, d in qrels.items() if d}
    run = {str(g): {str(i): float(scores[i]) for i in np.nonzero(groups == g)[0]} for g in range(40) if str(g) in qrels}
    assert grouped_ndcg_at_k(groups, labels, scores, 10) == pytest.approx(evaluate(Qrels(qrels), Run(run), "ndcg@10"), abs=1e-9)


def test_holdout_users_is_a_stable_seeded_fraction():
    ids = np.arange(1, 20001)
    held = holdout_users(ids, 0.2, seed=3)
    assert abs(held.mean() - 0.2) < 0.015
    assert np.array_equal(held[::-1], holdout_users(ids[::-1], 0.2, seed=3))  # per-id, order free
    assert not np.array_equal(held, holdout_users(ids, 0.2, seed=4))


def test_user_slices_partition_users_with_the_holdout_slice_first():
    ids = np.arange(1, 20001)
    slices = user_slices(ids, 0.2, seed=3)
    assert set(np.unique(slices)) == {0, 1, 2, 3, 4}
    assert np.array_equal(slices == 0, holdout_users(ids, 0.2, seed=3))
    assert np.abs(np.bincount(slices) / len(ids) - 0.2).max() < 0.015
    assert np.array_equal(slices[::-1], user_slices(ids[::-1], 0.2, seed=3))
    assert set(np.unique(user_slices(ids, 0.3, seed=3))) == {0, 1, 2, 3}  # ceil(1 / 0.3) slices, the last one smaller


def test_channel_features_are_scale_free_bounded_and_null_where_not_retrieved():
    """Two folds whose channel scores differ by a positive factor per channel (a refit on more data
    scales EASE weights and co-occurrence sums) give the same normalised features; only the raw
    score, dropped by default, differs."""
    rng = np.random.default_rng(11)
    items, history = _catalog(), _interactions([1, 2, 3], [1000, 1001, 1002], [T0] * 3)
    cu = np.repeat([1, 2, 3, 4], 12)
    ci = np.concatenate([1000 + rng.choice(200, 12, replace=False) for _ in range(4)])
    a, b = rng.normal(size=cu.size), rng.exponential(size=cu.size)  # a can be negative, b cannot
    keep = {"b": rng.random(cu.size) < 0.6}
    valid = _pool(cu, ci, {"a": a, "b": b}, keep=keep).with_columns(pl.lit(0.1).alias("rrf"), pl.lit(1, pl.Int32).alias("pool_rank"))
    test = _pool(cu, ci, {"a": 7.5 * a, "b": 0.02 * b}, keep=keep).with_columns(
        pl.lit(0.1).alias("rrf"), pl.lit(1, pl.Int32).alias("pool_rank")
    )
    fv = build_ranker_frame(valid, history, items, None, cutoff=CUTOFF)
    ft = build_ranker_frame(test, history, items, None, cutoff=CUTOFF)
    assert_frame_equal(fv, ft, check_exact=False, rel_tol=1e-12, abs_tol=1e-12)  # equal up to rounding
    cols = feature_columns(fv)
    assert not any(c.endswith("__score") for c in cols)
    for c in ("a", "b"):
        assert {f"{c}__rank", f"{c}__rrank", f"{c}__norm", f"{c}__ratio", f"{c}__hit"} <= set(cols)
        norm = fv[f"{c}__norm"].drop_nulls()
        assert norm.min() >= 0.0 and norm.max() <= 1.0
        per_user = fv.group_by("user_id").agg(pl.col(f"{c}__norm").max().alias("hi"), pl.col(f"{c}__norm").min().alias("lo"))
        assert (per_user["hi"] == 1.0).all() and (per_user["lo"] == 0.0).all()
        rrank = fv[f"{c}__rrank"].drop_nulls()
        assert rrank.min() > 0.0 and rrank.max() == 1.0
        assert fv[f"{c}__ratio"].drop_nulls().is_between(-1.0, 1.0).all()
    assert {"rrf", "pool_rank"} <= set(cols)
    missing = fv.filter(pl.col("b__hit") == 0)
    assert missing.height > 0
    assert missing.select(pl.col("b__rank", "b__rrank", "b__norm", "b__ratio").null_count()).row(0) == (missing.height,) * 4
    assert (fv["b__ratio"].drop_nulls() >= 0).all()  # non-negative channel: score / the user's best score
    # the ratio is the score over the user's best: check one user by hand
    u1 = valid.filter((pl.col("user_id") == 1) & pl.col("b__score").is_not_null())
    best = u1["b__score"].max()
    got = fv.join(u1.select("user_id", "item_id", "b__score"), on=["user_id", "item_id"]).sort("item_id")
    assert np.allclose(got["b__ratio"].to_numpy(), got["b__score"].to_numpy() / best)

    raw = build_ranker_frame(valid, history, items, None, cutoff=CUTOFF, raw_scores=True)
    assert {"a__score", "b__score"} <= set(feature_columns(raw))
    assert raw.drop("a__score", "b__score").equals(fv)
    assert not raw["a__score"].equals(build_ranker_frame(test, history, items, None, cutoff=CUTOFF, raw_scores=True)["a__score"])


def test_channel_features_when_a_users_scores_tie():
    items, history = _catalog(), _interactions([1], [1000], [T0])
    pool = _pool([1, 1, 2], [1001, 1002, 1003], {"a": np.array([2.0, 2.0, 0.0])})
    frame = build_ranker_frame(pool, history, items, None, cutoff=CUTOFF).sort("item_id")
    assert frame["a__norm"].to_list() == [1.0, 1.0, 1.0]  # ties (and a single candidate): every item is the best
    assert frame["a__ratio"].to_list() == [1.0, 1.0, 1.0]  # all-zero scores: the ratio is 1, not NaN
    assert frame["a__rrank"].to_list() == [0.5, 1.0, 1.0]


# ---------------------------------------------------------------------------------------- LightGBM


@pytest.fixture(scope="module")
def lgbm_model(taste_frames):
    train, _ = taste_frames
    return LGBMRanker(LGBMRankerParams(n_estimators=200, early_stopping_rounds=30)).fit(train)


def _single_feature_ndcgs(frame: pl.DataFrame, cols) -> dict[str, float]:
    g, y = frame["user_id"].to_numpy(), frame["label"].to_numpy()
    return {c: grouped_ndcg_at_k(g, y, frame[c].cast(pl.Float64).fill_null(-np.inf).to_numpy()) for c in cols}


def test_lgbm_learns_planted_rule_and_beats_every_single_channel(lgbm_model, taste_frames):
    _, test = taste_frames
    g, y = test["user_id"].to_numpy(), test["label"].to_numpy()
    ndcg = grouped_ndcg_at_k(g, y, lgbm_model.predict(test))
    singles = _single_feature_ndcgs(test, ["a__norm", "b__norm", "ui_cat_share"])  # __norm orders a user's items as the score
    assert ndcg > max(singles.values()) + 0.15, (ndcg, singles)
    assert ndcg > 0.9
    assert 0.9 < lgbm_model.valid_ndcg10 <= 1.0 and lgbm_model.best_iteration >= 1
    top = lgbm_model.feature_importance().head(4)["feature"].to_list()
    assert any(f.startswith("a__") for f in top) and any(f.startswith("ui_cat") for f in top), top
    assert set(lgbm_model.feature_importance()["feature"]) == set(feature_columns(test))


def test_lgbm_recommend_serialize_and_determinism(lgbm_model, taste_frames):
    train, test = taste_frames
    recs = lgbm_model.recommend(test, k=5)
    assert recs.schema == pl.Schema(RECOMMENDATION_SCHEMA)
    assert recs.group_by("user_id").agg(pl.col("rank").sort()).filter(pl.col("rank") != [1, 2, 3, 4, 5]).height == 0
    assert recs.filter(pl.col("score").diff().over("user_id") > 0).height == 0  # best first
    restored = LGBMRanker.from_bytes(lgbm_model.to_bytes())
    assert np.array_equal(restored.predict(test), lgbm_model.predict(test))
    assert restored.best_iteration == lgbm_model.best_iteration and restored.feature_cols == lgbm_model.feature_cols
    again = LGBMRanker(lgbm_model.params).fit(train)
    assert np.array_equal(again.predict(test), lgbm_model.predict(test))


def test_lgbm_drops_users_without_positives(taste_frames):
    train, _ = taste_frames
    negatives_only = train.with_columns(pl.when(pl.col("user_id") % 2 == 0).then(0).otherwise(pl.col("label")).alias("label"))
    model = LGBMRanker(LGBMRankerParams(n_estimators=20)).fit(negatives_only)
    users_with_pos = negatives_only.filter(pl.col("label") > 0)["user_id"].n_unique()
    assert model.n_train_users + model.n_valid_users == users_with_pos


# ---------------------------------------------------------------------------------------- sequence


def _next_category_world(seed: int, n_users: int = 400, n_hist: int = 12, n_cand: int = 30):
    """Histories of random categories; the label is an item of the *last* item's category."""
    rng = np.random.default_rng(seed)
    items = _catalog()
    hu = np.repeat(np.arange(n_users), n_hist)
    hitem = 1000 + rng.integers(0, N_CATS * PER_CAT, len(hu))
    ts = T0 + dt.timedelta(days=1) * np.tile(np.arange(n_hist), n_users) + dt.timedelta(seconds=1) * hu
    history = _interactions(hu + 1, hitem, list(ts))
    last_cat = (hitem.reshape(n_users, n_hist)[:, -1] - 1000) // PER_CAT
    pos_item = 1000 + last_cat * PER_CAT + rng.integers(0, PER_CAT, n_users)
    cand = np.stack(
        [np.r_[p, 1000 + rng.choice(np.setdiff1d(np.arange(N_CATS * PER_CAT), [p - 1000]), n_cand - 1, replace=False)] for p in pos_item]
    )
    cu = np.repeat(np.arange(n_users), n_cand)
    pool = _pool(cu + 1, cand.ravel(), {"noise": rng.normal(size=len(cu))})
    target = _interactions(np.arange(n_users) + 1, pos_item, [CUTOFF] * n_users)
    frame = build_ranker_frame(pool, history, items, None, [], target)
    return frame, history, items


@pytest.fixture(scope="module")
def sequence_setup():
    from recsys.rankers.sequence import SequenceRanker, SequenceRankerParams

    train, history, items = _next_category_world(0)
    test, test_history, _ = _next_category_world(1, n_users=150)
    test = test.with_columns(pl.col("user_id") + 10_000)
    test_history = test_history.with_columns(pl.col("user_id") + 10_000)
    history = pl.concat([history, test_history])
    runtime = TorchRuntime(threads=1, seed=0, log=lambda msg: None)
    # feature_cols=(): the ranker must find the pattern from the sequence alone, not ui_same_cat_last.
    params = SequenceRankerParams(feature_cols=(), epochs=8, max_len=12, hidden=32, batch_users=16, lr=1e-2, patience=8)
    model = SequenceRanker(params).fit(train, history, items, runtime=runtime)
    return model, train, test, history, items, runtime


def test_sequence_ranker_learns_next_category_pattern(sequence_setup):
    model, _, test, history, _, runtime = sequence_setup
    g, y = test["user_id"].to_numpy(), test["label"].to_numpy()
    rng = np.random.default_rng(0)
    random_ndcg = np.mean([grouped_ndcg_at_k(g, y, rng.random(len(g))) for _ in range(20)])
    ndcg = grouped_ndcg_at_k(g, y, model.predict(test, history, runtime))
    assert model.train_losses[-1] < model.train_losses[0] - 0.3, model.train_losses
    assert ndcg > random_ndcg + 0.2, (ndcg, random_ndcg)
    assert model.valid_ndcg10 > random_ndcg + 0.2


def test_sequence_ranker_serializes_and_is_deterministic(sequence_setup):
    from recsys.rankers.sequence import SequenceRanker

    model, train, test, history, items, runtime = sequence_setup
    scores = model.predict(test, history, runtime)
    restored = SequenceRanker.from_bytes(model.to_bytes())
    assert np.array_equal(restored.predict(test, history, runtime), scores)
    recs = restored.recommend(test, history, 10, runtime)
    assert recs.schema == pl.Schema(RECOMMENDATION_SCHEMA) and recs.group_by("user_id").len()["len"].max() == 10
    again = SequenceRanker(model.params).fit(train, history, items, runtime=runtime)
    assert again.train_losses == model.train_losses
    assert np.array_equal(again.predict(test, history, runtime), scores)


def test_sequence_ranker_scores_blocks_of_users_exactly_as_the_whole_frame(sequence_setup):
    """sequence_ranker scores the test fold per block of users: each block with only its users' history,
    padded to the whole table's longest list and made of whole torch batches (a multiple of
    predict_batch_users). Every score then equals scoring the frame at once, bit for bit."""
    import dataclasses

    from recsys.rankers.sequence import SequenceRanker

    fitted, _, test, history, _, runtime = sequence_setup
    model = SequenceRanker.from_bytes(fitted.to_bytes())
    model.params = dataclasses.replace(model.params, predict_batch_users=8)
    # lists of different lengths (a block's own longest list is mostly shorter than the frame's)
    keep = (pl.col("label") > 0) | pl.Series(np.random.default_rng(3).random(test.height) < 0.6)
    test = test.filter(keep).sort("user_id", maintain_order=True)
    lengths = test.group_by("user_id").len()["len"]
    assert lengths.min() < lengths.max()
    width = int(lengths.max())
    whole = model.predict(test, history, runtime)
    users = test["user_id"].unique().sort()
    scores, recs = [], []
    for s in range(0, len(users), 16):  # two batches per block; the last block is shorter
        mine = pl.col("user_id").is_in(users[s : s + 16].implode())
        block, block_history = test.filter(mine), history.filter(mine)
        scores.append(model.predict(block, block_history, runtime, width=width))
        recs.append(model.recommend(block, block_history, 10, runtime, width=width))
    assert len(users) % 16 and np.array_equal(np.concatenate(scores), whole)
    assert_frame_equal(pl.concat(recs), model.recommend(test, history, 10, runtime))
    with pytest.raises(ValueError, match="shorter"):
        model.predict(test, history, runtime, width=width - 1)


def test_sequence_ranker_scales_a_feature_missing_on_every_row_to_zero_without_warning():
    """A channel with no candidate in the window leaves its feature columns null on every row: their mean and
    spread do not exist, so they scale to 0 (mean 0, scale 1), and fitting says nothing about empty slices."""
    import warnings

    from recsys.rankers.sequence import SequenceRanker, SequenceRankerParams

    train, history, items = _next_category_world(0, n_users=60)
    train = train.with_columns(pl.lit(None, pl.Float64).alias("absent_channel__norm"))
    params = SequenceRankerParams(feature_cols=("noise__norm", "absent_channel__norm"), epochs=1, max_len=12, hidden=8, batch_users=16)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        model = SequenceRanker(params).fit(train, history, items, runtime=TorchRuntime(threads=1, seed=0, log=lambda msg: None))
    assert model.feat_mean[1] == 0.0 and model.feat_std[1] == 1.0
    assert np.isfinite(model.feat_mean).all() and (model._features(train)[:, 1] == 0.0).all()


def test_sequence_ranker_with_one_feature_column_fits_and_predicts():
    """One feature column: polars hands its matrix over as a read-only view, which the in-place scaling must not write to."""
    from recsys.rankers.sequence import SequenceRanker, SequenceRankerParams

    train, history, items = _next_category_world(0, n_users=60)
    runtime = TorchRuntime(threads=1, seed=0, log=lambda msg: None)
    params = SequenceRankerParams(feature_cols=("noise__norm",), epochs=1, max_len=12, hidden=8, batch_users=16)
    model = SequenceRanker(params).fit(train, history, items, runtime=runtime)
    assert np.isfinite(model.predict(train, history, runtime)).all()


def _labelled(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.filter((pl.col("label") > 0).any().over("user_id"))


def test_lgbm_scores_every_labelled_user_out_of_fold_for_the_guard(lgbm_model, taste_frames):
    """Under oof_max_users, holdout_scores covers every labelled user once; each hash slice's scores are those of a model
    of the same settings trained without that slice (checked by training it here); the served model is unchanged."""
    train, test = taste_frames
    labelled = _labelled(train)
    users = labelled["user_id"].unique().sort()
    got = lgbm_model.holdout_scores
    # each row with its own label (what the promotion gate's holdout_ndcg reads)
    keys = ["user_id", "item_id", "label"]
    assert got.select(keys).sort(pl.all()).equals(labelled.select(keys).cast({"label": got["label"].dtype}).sort(pl.all()))
    assert lgbm_model.n_oof_users == len(users) - lgbm_model.n_valid_users > 0
    slices = user_slices(users.to_numpy(), lgbm_model.params.valid_fraction, lgbm_model.params.seed)
    out = users.filter(pl.Series(slices == 2))
    without = labelled.filter(~pl.col("user_id").is_in(out.implode())).sort("user_id", "item_id")
    params = dataclasses.replace(lgbm_model.params, n_estimators=lgbm_model.best_iteration, early_stopping_rounds=0, refit_full=False)
    alone = LGBMRanker(dataclasses.replace(params, valid_fraction=0.0, min_valid_users=10**9)).fit(without, lgbm_model.feature_cols)
    mine = labelled.filter(pl.col("user_id").is_in(out.implode())).sort("user_id", "item_id")
    expected = mine.select("user_id", "item_id").with_columns(pl.Series("score", alone.predict(mine)))
    assert (
        got.join(expected, on=["user_id", "item_id"], how="inner").select((pl.col("score") - pl.col("score_right")).abs().max()).item()
        == 0.0
    )
    # the early-stopping slice only, above the size; the served model is the same either way
    small = LGBMRanker(dataclasses.replace(lgbm_model.params, oof_max_users=10)).fit(train)
    assert small.n_oof_users == 0 and small.holdout_scores["user_id"].n_unique() == small.n_valid_users
    assert np.array_equal(small.predict(test), lgbm_model.predict(test))


def test_sequence_ranker_scores_every_labelled_user_out_of_fold_for_the_guard(sequence_setup):
    from recsys.rankers.sequence import SequenceRanker

    model, train, test, history, items, runtime = sequence_setup
    labelled = _labelled(train)
    got = model.holdout_scores
    keys = ["user_id", "item_id", "label"]
    assert got.select(keys).sort(pl.all()).equals(labelled.select(keys).cast({"label": got["label"].dtype}).sort(pl.all()))
    assert model.n_oof_users == labelled["user_id"].n_unique() - model.n_valid_users > 0
    assert got["score"].is_finite().all()
    small = SequenceRanker(dataclasses.replace(model.params, oof_max_users=10)).fit(train, history, items, runtime=runtime)
    assert small.n_oof_users == 0 and small.holdout_scores["user_id"].n_unique() == small.n_valid_users
    assert np.array_equal(small.predict(test, history, runtime), model.predict(test, history, runtime))
