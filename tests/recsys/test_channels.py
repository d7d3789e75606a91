"""Candidate channels pop / als / ease / two_tower / tgh on synthetic data with planted structure.

Taste data: items live in categories with Zipf popularity inside each; every user draws most of
their events from one taste category.  Chain data: every item has one planted successor and users
walk the chain.  Each user's last event is held out; channels must rank it better than popularity.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from recsys.channels.als import ALSChannel
from recsys.channels.ease import EASEChannel, ease_weights
from recsys.channels.popularity import PopularityChannel
from recsys.channels.tgh import TransitionGraphChannel
from recsys.channels.two_tower import TwoTowerChannel
from recsys.runtime import TorchRuntime
from recsys.schema import INTERACTION_SCHEMA, RECOMMENDATION_SCHEMA, conform

T0 = datetime(2024, 1, 1)
RUNTIME = TorchRuntime(device="cpu", threads=1, seed=7, log=lambda msg: None)


def interactions(user, item, ts, event_type=None, session=None) -> pl.DataFrame:
    n = len(user)
    frame = pl.DataFrame(
        {
            "user_id": np.asarray(user, np.int64),
            "item_id": np.asarray(item, np.int64),
            "event_type": event_type if event_type is not None else ["view"] * n,
            "value": np.ones(n),
            "ts": ts,
            "session_id": pl.Series(session, dtype=pl.Int64) if session is not None else pl.Series([None] * n, dtype=pl.Int64),
            "source": ["test"] * n,
        }
    ).with_columns(pl.col("ts").cast(pl.Datetime("us")), pl.col("ts").dt.date().alias("event_date"))
    return conform(frame, INTERACTION_SCHEMA)


def taste_data(seed=0, n_users=400, n_cats=8, per_cat=50, n_events=20, p_taste=0.85):
    """Users with one taste category each; returns (history, held_out_last, items)."""
    rng = np.random.default_rng(seed)
    n_items = n_cats * per_cat
    item_cat = np.arange(n_items) // per_cat
    zipf = 1.0 / (np.arange(per_cat) + 1.0) ** 0.8
    within = np.tile(zipf / zipf.sum(), n_cats)
    taste = rng.integers(0, n_cats, n_users)
    probs = (1 - p_taste) / n_items + p_taste * within[None, :] * (item_cat[None, :] == taste[:, None])
    # Gumbel top-k: n_events distinct items per user drawn in proportion to probs
    keys = np.log(probs) + rng.gumbel(size=probs.shape)
    chosen = np.argpartition(-keys, n_events, axis=1)[:, :n_events]
    chosen = rng.permuted(chosen, axis=1)
    user = np.repeat(np.arange(n_users) + 10_000, n_events)
    ts = [T0 + timedelta(hours=int(h)) for h in np.tile(np.arange(n_events), n_users) + np.repeat(rng.integers(0, 500, n_users), n_events)]
    kinds = np.where(rng.random(user.size) < 0.1, "buy", "view").tolist()
    full = interactions(user, chosen.reshape(-1) + 1, ts, kinds)
    full = full.sort("user_id", "ts").with_columns(pl.int_range(pl.len()).over("user_id").alias("pos"))
    history = full.filter(pl.col("pos") < n_events - 1).drop("pos")
    held_out = full.filter(pl.col("pos") == n_events - 1).select("user_id", "item_id")
    items = pl.DataFrame({"item_id": np.arange(n_items, dtype=np.int64) + 1, "category_id": item_cat.astype(np.int64)})
    return history, held_out, items


def chain_data(seed=1, n_users=300, n_items=200, n_steps=12, p_follow=0.9):
    """Random walks over a planted successor permutation; returns (history, successor dict)."""
    rng = np.random.default_rng(seed)
    succ = rng.permutation(n_items)
    cur = rng.integers(0, n_items, n_users)
    walk = [cur]
    for _ in range(n_steps - 1):  # steps, not rows: each step is vectorized over users
        jump = rng.random(n_users) > p_follow
        cur = np.where(jump, rng.integers(0, n_items, n_users), succ[cur])
        walk.append(cur)
    items = np.stack(walk, axis=1).reshape(-1) + 1
    user = np.repeat(np.arange(n_users) + 1, n_steps)
    ts = [T0 + timedelta(minutes=int(m)) for m in np.tile(np.arange(n_steps), n_users)]
    return interactions(user, items, ts), {int(i) + 1: int(succ[i]) + 1 for i in range(n_items)}


def hit_rate(recs: pl.DataFrame, truth: pl.DataFrame, k: int) -> float:
    return recs.filter(pl.col("rank") <= k).join(truth, on=["user_id", "item_id"]).height / truth.height


@pytest.fixture(scope="module")
def taste():
    return taste_data()


FACTORIES = {
    "pop": lambda: PopularityChannel(),
    "als": lambda: ALSChannel(factors=16, iterations=10),
    "ease": lambda: EASEChannel(l2=50.0),
    "two_tower": lambda: TwoTowerChannel(dim=32, epochs=8, batch_size=512),
    "tgh": lambda: TransitionGraphChannel(),
}


@pytest.fixture(scope="module")
def fitted(taste):
    history, _, items = taste
    return {name: make().fit(history, items, runtime=RUNTIME) for name, make in FACTORIES.items()}


@pytest.mark.parametrize("name", list(FACTORIES))
def test_frame_contract_ranks_and_seen_exclusion(name, fitted, taste):
    history, held_out, _ = taste
    channel = fitted[name]
    assert channel.name == name
    users = held_out["user_id"].head(50)
    recs = channel.recommend(users, k=15)
    assert recs.schema == pl.Schema(RECOMMENDATION_SCHEMA)
    per_user = recs.group_by("user_id").agg(pl.col("rank"), pl.col("score"), pl.col("item_id").n_unique().alias("n"))
    assert per_user.height == 50
    for ranks, scores, n in per_user.select("rank", "score", "n").iter_rows():
        assert ranks == list(range(1, 16)) and n == 15
        assert all(a >= b for a, b in zip(scores, scores[1:]))  # best first
    seen = recs.join(history.select("user_id", "item_id").unique(), on=["user_id", "item_id"])
    assert seen.height == 0
    with_seen = channel.recommend(users, k=15, exclude_seen=False)
    assert with_seen.height == recs.height


@pytest.mark.parametrize("name", list(FACTORIES))
def test_unknown_users_get_popularity_and_fit_is_deterministic(name, fitted, taste):
    history, held_out, items = taste
    channel = fitted[name]
    cold = channel.recommend([-1, -2], k=5)
    assert cold["user_id"].unique().sort().to_list() == [-2, -1]
    popular = history.group_by("item_id").len().sort("len", descending=True)["item_id"].head(40).to_list()
    assert set(cold["item_id"].to_list()) <= set(popular)
    again = FACTORIES[name]().fit(history, items, runtime=RUNTIME)
    users = held_out["user_id"].head(30)
    a, b = channel.recommend(users, k=10), again.recommend(users, k=10)
    assert a.select("user_id", "item_id").equals(b.select("user_id", "item_id"))
    np.testing.assert_allclose(a["score"].to_numpy(), b["score"].to_numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["als", "ease", "two_tower"])
def test_taste_channels_beat_popularity(name, fitted, taste):
    history, held_out, items = taste
    users = held_out["user_id"]
    hr = hit_rate(fitted[name].recommend(users, k=10), held_out, 10)
    hr_global = hit_rate(PopularityChannel(mode="global").fit(history, items).recommend(users, k=10), held_out, 10)
    hr_blend = hit_rate(fitted["pop"].recommend(users, k=10), held_out, 10)
    # planted single-category tastes: personal models must beat both global and per-category popularity
    assert hr > max(3 * hr_global, hr_blend + 0.05), (name, hr, hr_global, hr_blend)


def test_blended_popularity_uses_category_tastes(fitted, taste):
    history, held_out, items = taste
    users = held_out["user_id"]
    hr_global = hit_rate(PopularityChannel(mode="global").fit(history, items).recommend(users, k=10), held_out, 10)
    assert hit_rate(fitted["pop"].recommend(users, k=10), held_out, 10) > 3 * hr_global


def test_two_tower_logs_validation_and_round_trips_bytes(fitted, taste):
    _, held_out, _ = taste
    model = fitted["two_tower"]
    lines = []
    TwoTowerChannel(dim=16, epochs=2, batch_size=512).fit(taste[0], taste[2], runtime=TorchRuntime(threads=1, seed=7, log=lines.append))
    epochs = [line for line in lines if line.startswith("two_tower epoch ")]
    assert len(epochs) == 2 and all("loss=" in line and "HitRate@50=" in line for line in epochs)
    assert "sampled per epoch" in lines[0]  # the setup line: training examples, per-epoch sample, validation users
    hr = [r["hit_rate@50"] for r in model.history_]
    assert max(hr) > hr[0]  # training improved the held-out metric
    clone = TwoTowerChannel.from_bytes(model.to_bytes(), runtime=RUNTIME)
    users = held_out["user_id"].head(40)
    assert clone.recommend(users, k=20).equals(model.recommend(users, k=20))


def test_popularity_modes_follow_their_definitions():
    # item 1: 3 old views; item 2: one buy (weight 4) now; item 3: 2 views now
    ts_old, ts_new = T0, T0 + timedelta(days=14)
    history = interactions(
        [1, 2, 3, 4, 5, 6, 7, 8],
        [1, 1, 1, 2, 3, 3, 9, 9],
        [ts_old, ts_old, ts_old, ts_new, ts_new, ts_new, ts_old, ts_old],
        ["view", "view", "view", "buy", "view", "view", "view", "view"],
    )
    glob = PopularityChannel(mode="global").fit(history).item_scores()
    assert glob["item_id"].head(3).to_list() == [2, 1, 3]
    recent = PopularityChannel(mode="recent", half_life_days=7.0).fit(history).item_scores()
    assert recent["item_id"].head(3).to_list() == [2, 3, 1]
    # 3 views two half-lives ago weigh 3/4 of one fresh view
    s = dict(zip(recent["item_id"].to_list(), recent["score"].to_list()))
    assert s[1] / s[3] == pytest.approx(0.75 / 2.0, rel=1e-6)


def test_category_popularity_serves_the_users_categories(taste):
    history, held_out, items = taste
    channel = PopularityChannel(mode="category", n_top_categories=1).fit(history, items)
    recs = channel.recommend(held_out["user_id"], k=10).join(items, on="item_id")
    user_top = (
        history.join(items, on="item_id").group_by("user_id", "category_id").len().sort("len", descending=True).group_by("user_id").first()
    )
    in_top = recs.join(user_top.select("user_id", pl.col("category_id").alias("top")), on="user_id")
    assert (in_top["category_id"] == in_top["top"]).mean() > 0.95
    with pytest.raises(ValueError, match="category_id"):
        PopularityChannel(mode="category").fit(history)


def test_ease_matches_direct_constrained_least_squares():
    rng = np.random.default_rng(3)
    import scipy.sparse as sp

    X = sp.csr_matrix((rng.random((40, 9)) < 0.35).astype(np.float64))
    lam = 2.5
    B = ease_weights(X, lam)
    dense = X.toarray()
    # column j: ridge regression of x_j on the other columns (diag(B) = 0 by construction)
    for j in range(dense.shape[1]):
        others = np.delete(np.arange(dense.shape[1]), j)
        A = dense[:, others]
        b = np.linalg.solve(A.T @ A + lam * np.eye(len(others)), A.T @ dense[:, j])
        np.testing.assert_allclose(B[others, j], b, rtol=1e-8, atol=1e-10)
        assert B[j, j] == 0.0


def test_ease_fits_large_catalogs_on_the_head_instead_of_failing(taste):
    # tests/recsys/test_ease_large.py holds the head-mode contract in detail
    history, _, _ = taste
    channel = EASEChannel(max_items=100).fit(history)
    assert channel.mode_ == "head" and channel.n_head_items_ == 100 == channel.B_.shape[0]
    assert channel.n_items_ == history["item_id"].n_unique()


def test_tgh_recovers_planted_successor():
    history, succ = chain_data()
    channel = TransitionGraphChannel().fit(history, runtime=RUNTIME)
    last = history.sort("ts").group_by("user_id").last().select("user_id", "item_id")
    truth = last.with_columns(pl.col("item_id").replace_strict(succ).alias("item_id"))
    seen = history.select("user_id", "item_id").unique()
    truth = truth.join(seen, on=["user_id", "item_id"], how="anti")  # excluded items cannot be hit
    top1 = channel.recommend(truth["user_id"], k=1, exclude_seen=True)
    assert hit_rate(top1, truth, 1) > 0.8
    pop = PopularityChannel(mode="global").fit(history).recommend(truth["user_id"], k=1)
    assert hit_rate(pop, truth, 1) < 0.1
    # graph scores rank ring candidates above the popularity fill
    recs = channel.recommend(truth["user_id"].head(5), k=50)
    assert (recs.filter(pl.col("rank") == 1)["score"] > 1.0).all()
    assert recs.filter(pl.col("score") < 1.0)["rank"].min() > 1


def test_tgh_edges_stay_within_sessions():
    ts = [T0 + timedelta(minutes=m) for m in range(6)]
    history = interactions([1] * 6, [1, 2, 3, 4, 5, 6], ts, session=[10, 10, 10, 11, 11, 11])
    T = TransitionGraphChannel().fit(history).transitions_.toarray()
    assert T[0, 1] == 1 and T[1, 2] == 1 and T[3, 4] == 1 and T[4, 5] == 1
    assert T[2, 3] == 0 and T.sum() == 4  # no edge across the session boundary


# --- exact top-k under the tie rule; sparse pop/tgh paths equal the dense reference (issue 10) ---


def _reference_topk(x: np.ndarray, k: int) -> np.ndarray:
    """Full sort by (score descending, column ascending); -1 where the score is not finite."""
    x = np.where(np.isnan(x), -np.inf, x)
    order = np.lexsort((np.broadcast_to(np.arange(x.shape[1]), x.shape), -x), axis=-1)[:, : min(k, x.shape[1])]
    idx = order.astype(np.int32)
    idx[~np.isfinite(np.take_along_axis(x, order, axis=1))] = -1
    return idx


@pytest.mark.parametrize("kernel_min_size", [1, 1 << 62])  # torch.topk / np.argpartition pick the candidates
def test_topk_rows_breaks_ties_by_position_whatever_the_kernel(kernel_min_size, monkeypatch):
    import recsys.channels.base as base

    monkeypatch.setattr(base, "TORCH_TOPK_MIN_SIZE", kernel_min_size)
    rng = np.random.default_rng(3)
    for _ in range(60):
        n, m, k = int(rng.integers(1, 20)), int(rng.integers(1, 60)), int(rng.integers(0, 70))
        x = rng.integers(0, 4, (n, m)).astype(np.float32)  # heavy ties
        x[rng.random((n, m)) < 0.2] = -np.inf
        x[rng.random((n, m)) < 0.05] = np.nan
        exclude = sp.csr_matrix(rng.random((n, m)) < 0.1)
        idx, val = base.topk_rows(x, k, exclude)
        masked = x.copy()
        masked[exclude.toarray()] = -np.inf
        ref = _reference_topk(masked, k)
        assert np.array_equal(idx, ref)
        assert np.all(val[idx < 0] == -np.inf)
        r, c = np.nonzero(np.isfinite(x))
        sidx, sval = base.topk_sparse(r, c, x[r, c], n, m, k, exclude)
        assert np.array_equal(sidx, ref) and np.array_equal(sval, val)


def tie_data(seed: int):
    """Few timestamps and few events per item, so many items share popularity exactly; catalogue items
    without events (score 0) and items without a category."""
    rng = np.random.default_rng(seed)
    n_users, n_items, n_events = 150, 90, 1500
    stamps = [T0 + timedelta(days=int(d)) for d in rng.integers(0, 4, n_events)]
    user = rng.integers(0, n_users, n_events) + 500
    item = (rng.zipf(1.6, n_events) % n_items) + 1
    kinds = rng.choice(["view", "view", "click", "buy"], n_events).tolist()
    order = np.argsort(np.array(stamps, dtype="datetime64[us]"), kind="stable")
    history = interactions(user[order], item[order], [stamps[i] for i in order], [kinds[i] for i in order])
    all_items = np.arange(1, n_items + 40)
    cats = pl.Series("category_id", rng.integers(0, 6, len(all_items)), dtype=pl.Int64)
    cats = cats.scatter(np.flatnonzero(rng.random(len(all_items)) < 0.1), None)
    items = pl.DataFrame({"item_id": all_items, "category_id": cats})
    return history, items, np.r_[np.unique(user), [1, 2]]  # two unknown users


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"mode": "global"},
        {"mode": "recent"},
        {"mode": "category"},
        {"n_top_categories": 1},
        {"n_top_categories": 10},
        {"batch_size": 37},
    ],
)
def test_sparse_popularity_equals_dense_reference(seed, params):
    history, items, users = tie_data(seed)
    sparse = PopularityChannel(**params).fit(history, items=items)
    dense = PopularityChannel(dense=True, **params).fit(history, items=items)
    for k in (1, 5, 40, 500):
        for exclude_seen in (True, False):
            a = sparse.recommend(users, k=k, exclude_seen=exclude_seen)
            b = dense.recommend(users, k=k, exclude_seen=exclude_seen)
            assert a.equals(b), (params, k, exclude_seen)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("params", [{}, {"n_anchors": 1, "max_candidates": 3}, {"batch_size": 37}])
def test_sparse_tgh_equals_dense_reference(seed, params):
    history, _, users = tie_data(seed)
    sparse = TransitionGraphChannel(**params).fit(history)
    dense = TransitionGraphChannel(dense=True, **params).fit(history)
    assert (sparse.pop_[:, None] == sparse.pop_[None, :]).sum() > 2 * len(sparse.pop_)  # ties planted
    for k in (1, 5, 40, 500):
        for exclude_seen in (True, False):
            a = sparse.recommend(users, k=k, exclude_seen=exclude_seen)
            b = dense.recommend(users, k=k, exclude_seen=exclude_seen)
            assert a.equals(b), (params, k, exclude_seen)


def test_dense_scores_do_not_depend_on_which_users_are_scored_beside_them():
    """recommend_dense scores a block of users as one float32 GEMM, which rounds a row by where it sits
    in the block. Blocks are cut in the channel's own (label-free) user order, so the order the caller
    lists users in (id order, which relabelling changes) moves no score and no near-tie; the output
    keeps the caller's order."""
    from recsys.channels.base import IdIndex
    from recsys.channels.popularity import recommend_dense

    rng = np.random.default_rng(0)
    n_users, n_items, dim = 700, 900, 384
    profiles = rng.standard_normal((n_users, dim)).astype(np.float32)
    emb = rng.standard_normal((n_items, dim)).astype(np.float32)
    users = IdIndex(rng.permutation(np.arange(10_000, 10_000 + n_users)).astype(np.int64))  # positions: not id order
    items = IdIndex(np.arange(n_items, dtype=np.int64))
    ids = np.sort(users.ids)
    runs = []
    for listed in (ids, ids[::-1], rng.permutation(ids)):
        recs = recommend_dense(listed, 50, users, items, lambda p: profiles[p] @ emb.T, None, None, batch_size=256)
        assert recs["user_id"].unique(maintain_order=True).to_list() == listed.tolist()  # the caller's order
        runs.append(recs.sort("user_id", "rank"))
    for other in runs[1:]:
        assert other.equals(runs[0])
