"""Item CF and Swing recover a planted item → next-item graph; the channel recommends it."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import polars as pl
import pytest

from recsys.channels.base import IdIndex
from recsys.channels.itemcf import (
    ItemCFChannel,
    build_cooc_index,
    build_swing_index,
    topk_sparse,
)
from recsys.schema import INTERACTION_SCHEMA, RECOMMENDATION_SCHEMA, conform

ITEM_OFFSET = 10_000  # external ids differ from positions, so a mapping bug cannot hide


def make_planted_walks(
    n_users=300, n_items=300, n_cats=10, n_next=24, steps=(30, 70), seed=0, taste_power=2.0, n_styles=3, style_boost=4.0
):
    """Users walking a planted next-item graph, with category tastes.

    Item j's category is j % n_cats. Each item has ``n_next`` planted next items, half in its own
    category and half in the two following categories, with Zipf transition weights. A user likes
    two adjacent categories and one hidden item style (no feature says which); each step moves along
    the graph with probability ∝ weight × taste^p × (style_boost if the style is his), or restarts
    (15 %) to a popular item of a liked category. Sessions are runs of ~8 steps, days apart.
    Returns (history, items, users, next_items [n_items, n_next] positions).
    """
    rng = np.random.default_rng(seed)
    cat = np.arange(n_items) % n_cats
    by_cat = [np.flatnonzero(cat == c) for c in range(n_cats)]
    nxt = np.empty((n_items, n_next), np.int64)
    for j in range(n_items):
        own = rng.choice(by_cat[cat[j]][by_cat[cat[j]] != j], n_next // 2, replace=False)
        rel = np.concatenate([by_cat[(cat[j] + 1) % n_cats], by_cat[(cat[j] + 2) % n_cats]])
        other = rng.choice(rel, n_next - n_next // 2, replace=False)
        nxt[j] = rng.permutation(np.concatenate([own, other]))
    trans_w = 1.0 / np.arange(1, n_next + 1) ** 0.6
    pop = 1.0 / (1 + np.arange(n_items) // n_cats) ** 0.8  # Zipf inside each category
    style = (np.arange(n_items) // n_cats) % n_styles
    fav = rng.integers(0, n_cats, n_users)
    fav_style = rng.integers(0, n_styles, n_users)
    taste = np.full((n_users, n_cats), 0.03)
    taste[np.arange(n_users), fav] = 1.0
    taste[np.arange(n_users), (fav + 1) % n_cats] = 0.6
    rows_u, rows_i, rows_t, rows_s, rows_e = [], [], [], [], []
    t0 = datetime(2024, 1, 1).timestamp()
    session = 0
    for u in range(n_users):
        n_steps = rng.integers(*steps)
        t = t0 + rng.uniform(0, 5 * 86400)
        cur = -1
        left_in_session = 0
        for _ in range(n_steps):
            if left_in_session == 0:
                session += 1
                left_in_session = rng.geometric(1 / 8)
                t += rng.uniform(1, 3) * 86400
                cur = -1
            if cur < 0 or rng.random() < 0.15:
                c = rng.choice(n_cats, p=taste[u] / taste[u].sum())
                p = pop[by_cat[c]]
                cur = rng.choice(by_cat[c], p=p / p.sum())
            else:
                w = trans_w * taste[u, cat[nxt[cur]]] ** taste_power
                w = w * np.where(style[nxt[cur]] == fav_style[u], style_boost, 1.0)
                cur = nxt[cur][rng.choice(n_next, p=w / w.sum())]
            t += rng.uniform(20, 120)
            ev = "view" if rng.random() > 0.1 else "cart"
            rows_u.append(u), rows_i.append(cur), rows_t.append(t), rows_s.append(session), rows_e.append(ev)
            left_in_session -= 1
    ts = pl.Series("ts", (np.array(rows_t) * 1e6).astype(np.int64)).cast(pl.Datetime("us"))
    history = pl.DataFrame(
        {
            "user_id": np.array(rows_u, np.int64) + 1,
            "item_id": np.array(rows_i, np.int64) + ITEM_OFFSET,
            "event_type": rows_e,
            "value": np.ones(len(rows_u)),
            "ts": ts,
            "session_id": np.array(rows_s, np.int64),
            "source": "planted",
        }
    ).with_columns(pl.col("ts").dt.date().alias("event_date"))
    history = conform(history, INTERACTION_SCHEMA)
    items = pl.DataFrame({"item_id": np.arange(n_items, dtype=np.int64) + ITEM_OFFSET, "category_id": cat})
    users = pl.DataFrame(
        {
            "user_id": np.arange(n_users, dtype=np.int64) + 1,
            "segment": fav.astype(str),  # the planted taste as a categorical user feature
            "noise": rng.integers(0, 7, n_users).astype(str),
        }
    )
    return history, items, users, nxt


def leave_last_out(history: pl.DataFrame):
    history = history.sort("user_id", "ts")
    last = history.group_by("user_id").agg(pl.col("ts").max().alias("t_last"))
    h = history.join(last, on="user_id")
    train = h.filter(pl.col("ts") < pl.col("t_last")).drop("t_last")
    test = h.filter(pl.col("ts") == pl.col("t_last")).select("user_id", "item_id").unique()
    # Judge next-item prediction only where the next item is new to the user.
    test = test.join(train.select("user_id", "item_id").unique(), on=["user_id", "item_id"], how="anti")
    return train, test


def hit_rate(recs: pl.DataFrame, truth: pl.DataFrame, k: int) -> float:
    hits = recs.filter(pl.col("rank") <= k).join(truth, on=["user_id", "item_id"], how="semi")
    return hits["user_id"].n_unique() / truth["user_id"].n_unique()


def planted_precision(index, nxt: np.ndarray, d: int) -> float:
    """Share of each item's top-d neighbours that are planted neighbours (either direction)."""
    n = nxt.shape[0]
    planted = np.zeros((n, n), bool)
    planted[np.repeat(np.arange(n), nxt.shape[1]), nxt.ravel()] = True
    planted |= planted.T
    pos = index.items.positions(np.arange(n) + ITEM_OFFSET)
    tg = index.targets[pos, :d]
    ok = tg >= 0
    ext = np.where(ok, index.items.ids[np.maximum(tg, 0)] - ITEM_OFFSET, 0)
    hits = planted[np.repeat(np.arange(n), d).reshape(n, d), ext] & ok
    return float(hits.sum() / max(ok.sum(), 1))


@pytest.fixture(scope="module")
def planted():
    return make_planted_walks(seed=0)


def test_cooc_recovers_planted_neighbours(planted):
    history, _, _, nxt = planted
    index = build_cooc_index(history, depth=20)
    base_rate = 2 * nxt.shape[1] / nxt.shape[0]  # planted pairs per item / catalogue, both directions
    prec = planted_precision(index, nxt, 10)
    assert prec > 0.6 > 3 * base_rate
    assert index.targets.dtype == np.int32 and index.targets.shape == (300, 20)
    # Scores sorted best first, no self-loops, counts are positive integers where filled.
    filled = index.targets >= 0
    assert np.all(np.diff(np.where(filled, index.scores, -np.inf), axis=1) <= 1e-7)
    assert not np.any(index.targets == np.arange(300)[:, None])
    assert np.all(index.counts[filled] >= 1) and np.allclose(index.counts, np.round(index.counts))


def test_session_window_beats_whole_history(planted):
    history, _, _, nxt = planted
    windowed = build_cooc_index(history.with_columns(pl.lit(None, pl.Int64).alias("session_id")), depth=20, window_hours=6)
    whole = build_cooc_index(history.with_columns(pl.lit(None, pl.Int64).alias("session_id")), depth=20, window_hours=None)
    by_session = build_cooc_index(history, depth=20)
    # Walks restart between sessions: windowing removes cross-session noise pairs (seeds 0-2: +0.06..0.08).
    assert planted_precision(windowed, nxt, 10) > planted_precision(whole, nxt, 10) + 0.04
    assert planted_precision(by_session, nxt, 10) > planted_precision(whole, nxt, 10) + 0.04


def test_cooc_counts_match_bruteforce():
    # Two sessions: {a, b, c} and {a, b}; a third user with {b, c} in one session.
    history = (
        pl.DataFrame(
            {
                "user_id": [1, 1, 1, 1, 1, 2, 2],
                "item_id": [10, 11, 12, 10, 11, 11, 12],
                "event_type": ["view", "view", "buy", "view", "cart", "view", "view"],
                "value": [1.0] * 7,
                "session_id": [1, 1, 1, 2, 2, 3, 3],
                "source": ["t"] * 7,
            }
        )
        .with_columns((pl.lit(datetime(2024, 1, 1)) + pl.duration(minutes=pl.int_range(pl.len()))).alias("ts").cast(pl.Datetime("us")))
        .with_columns(pl.col("ts").dt.date().alias("event_date"))
    )
    history = conform(history, INTERACTION_SCHEMA)
    idx = build_cooc_index(history, depth=2, user_weighting="none", normalize="none", max_items_per_user=None)
    pos = idx.items.positions([10, 11, 12])
    score, count, rank = idx.lookup(pos[[0, 0, 1]], pos[[1, 2, 2]])
    # a–b: session 1 (1·1) + session 2 (1·3 cart); a–c: session 1 (1·4 buy); b–c: 1·4 + 1·1.
    np.testing.assert_allclose(score, [4.0, 4.0, 5.0])
    np.testing.assert_allclose(count, [2.0, 1.0, 2.0])
    cos = build_cooc_index(history, depth=2, user_weighting="none", normalize="cosine", max_items_per_user=None)
    # Cosine of weighted basket vectors: a=(1,1,0), b=(1,3,1), c=(4,0,1).
    a, b, c = np.array([1, 1, 0.0]), np.array([1, 3, 1.0]), np.array([4, 0, 1.0])
    expect = [
        a @ b / np.linalg.norm(a) / np.linalg.norm(b),
        a @ c / np.linalg.norm(a) / np.linalg.norm(c),
        b @ c / np.linalg.norm(b) / np.linalg.norm(c),
    ]
    np.testing.assert_allclose(cos.lookup(pos[[0, 0, 1]], pos[[1, 2, 2]])[0], expect, rtol=1e-5)


def test_swing_matches_bruteforce_and_recovers_planted(planted):
    history, _, _, nxt = planted
    small = history.filter(pl.col("user_id") <= 40)
    swing = build_swing_index(small, depth=400, max_items_per_user=None, max_users_per_item=None, alpha=1.0)
    users = IdIndex.from_values(small["user_id"])
    items = swing.items
    a = np.zeros((len(users), len(items)), bool)
    a[users.positions(small["user_id"]), items.positions(small["item_id"])] = True
    w = (a.sum(1) + 5.0) ** -0.35
    overlap = a.astype(float) @ a.T.astype(float)
    rng = np.random.default_rng(1)
    for i, j in rng.integers(0, len(items), (40, 2)):
        if i == j:
            continue
        both = np.flatnonzero(a[:, i] & a[:, j])
        expect = sum(w[u] * w[v] / (1.0 + overlap[u, v]) for x, u in enumerate(both) for v in both[x + 1 :])
        got = swing.lookup(np.array([i]), np.array([j]))[0][0]
        assert got == pytest.approx(expect, rel=1e-5, abs=1e-9)
    full = build_swing_index(history, depth=20)
    assert planted_precision(full, nxt, 10) > 0.5


def test_topk_sparse_orders_and_pads():
    rows = np.array([0, 0, 0, 2, 2])
    cols = np.array([5, 3, 9, 1, 2])
    vals = np.array([0.5, 0.9, 0.5, 0.1, 0.2], np.float32)
    idx, val, _ = topk_sparse(rows, cols, vals, 3, 2)
    assert idx.tolist() == [[3, 5], [-1, -1], [2, 1]]
    np.testing.assert_allclose(val, [[0.9, 0.5], [0, 0], [0.2, 0.1]])


@pytest.mark.parametrize("method", ["cooc", "swing"])
def test_channel_recommends_planted_next_items(planted, method):
    history, items, _, _ = planted
    train, test = leave_last_out(history)
    ch = ItemCFChannel(depth=30, method=method).fit(train, items=items)
    users = test["user_id"].unique().sort()
    recs = ch.recommend(users, k=10)
    assert recs.schema == pl.Schema(RECOMMENDATION_SCHEMA)
    assert recs.group_by("user_id").agg(pl.len())["len"].max() <= 10
    assert recs.join(train, on=["user_id", "item_id"], how="semi").height == 0  # seen excluded
    ranks_ok = recs.group_by("user_id").agg((pl.col("rank").diff().drop_nulls() == 1).all(), pl.col("score").is_sorted(descending=True))
    assert ranks_ok["rank"].all() and ranks_ok["score"].all()
    # Seeds 0-2: global popularity hits 0.03-0.05 here, item CF 0.46-0.52 (cooc) / 0.39-0.46 (swing).
    assert hit_rate(recs, test, 10) > 0.35
    unknown = ch.recommend(np.array([-5]), k=10)
    assert unknown.height == 0


@pytest.mark.parametrize("weighted", [False, True])
def test_cooc_core_matches_dense_and_ignores_thread_count(weighted):
    """The top-n product (sparse_dot_topn) against a dense brute force: scores, raw counts (derived
    from the value on the binary path, read from a binary product on the weighted one), no self."""
    import scipy.sparse as sp

    from recsys.channels.itemcf import cooc_from_baskets

    rng = np.random.default_rng(3)
    dense = (rng.random((400, 60)) < 0.08).astype(np.float32)
    if weighted:
        dense *= rng.choice([1.0, 2.0, 4.0], dense.shape).astype(np.float32)
    m = sp.csr_matrix(dense)
    uw = rng.uniform(0.5, 1.5, 400) if weighted else None
    one = cooc_from_baskets(m, uw, 8, n_threads=1)
    two = cooc_from_baskets(m, uw, 8, n_threads=2)
    assert np.array_equal(one.targets, two.targets) and np.array_equal(one.scores, two.scores)
    w = np.ones(400) if uw is None else uw
    c = dense.T.astype(np.float64) @ (dense * w[:, None])
    norms = np.sqrt(np.diag(c))
    cos = c / np.outer(norms, norms)
    count = (dense > 0).T.astype(np.float64) @ (dense > 0)
    np.fill_diagonal(cos, -np.inf)
    filled = one.targets >= 0
    rows = np.nonzero(filled)[0]
    np.testing.assert_allclose(one.scores[filled], cos[rows, one.targets[filled]], rtol=1e-5)
    np.testing.assert_array_equal(one.counts[filled], count[rows, one.targets[filled]])
    # Each list holds the 8 best (ties aside): its last score is at least every left-out score.
    best = -np.sort(-np.where(cos > 0, cos, -np.inf), axis=1)[:, :8]
    np.testing.assert_allclose(np.where(filled, one.scores, -np.inf), np.where(np.isfinite(best), best, -np.inf), rtol=1e-5)


def test_a_tie_across_the_cut_is_decided_by_the_tie_rule_not_the_kernel():
    """``exact_ties``: binary baskets where item 0 meets items 1..12 equally often: all twelve tie on score, so who is
    kept at depth 4 follows the index's order (score, then the target's support, then its position),
    exactly as a brute force ranks them, whatever the kernel's own accumulation order."""
    import scipy.sparse as sp

    from recsys.channels.itemcf import cooc_from_baskets

    rows, cols = [], []
    for j in range(1, 13):  # basket j holds items 0 and j: every pair (0, j) co-occurs once
        rows += [j, j]
        cols += [0, j]
    extra = {5: 2, 9: 2, 11: 1}  # items with more baskets (support), in baskets without item 0: lower cosine
    b = 13
    for item, n in extra.items():
        for _ in range(n):
            rows.append(b)
            cols.append(item)
            b += 1
    m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(b, 13))
    dense = m.toarray().astype(np.float64)
    c = dense.T @ dense
    cos = c / np.sqrt(np.outer(np.diag(c), np.diag(c)))
    support = dense.sum(axis=0)
    for depth in (1, 3, 4, 6):
        index = cooc_from_baskets(m, None, depth, n_threads=1, exact_ties=True)
        candidates = [j for j in range(13) if j != 0 and cos[0, j] > 0]
        # score (float32, as the index ranks it), then support (descending), then position
        want = sorted(candidates, key=lambda j: (-np.float32(cos[0, j]), -support[j], j))[:depth]
        assert index.targets[0, :depth].tolist() == want, depth
