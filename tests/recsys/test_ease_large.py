"""EASE on catalogues larger than ``max_items``: head mode instead of an error (recsys/channels/ease.py).

Planted data: 20 head items in 10 pairs (a user who takes one item of a pair takes the other too,
unless it is held back) and 40 tail items with few rows each, item ids scrambled so that id order
says nothing.  Head mode must pick exactly the planted head, never recommend a tail item, cover the
planted share of rows, and equal a full EASE fitted on the history restricted to the head.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest

from recsys.channels.base import IdIndex, interaction_matrix
from recsys.channels.ease import EASEChannel, ease_weights, head_positions
from recsys.channels.popularity import popularity_vector, recommend_dense, scaled
from recsys.schema import INTERACTION_SCHEMA, conform

T0 = datetime(2024, 1, 1)
N_HEAD, N_TAIL = 20, 40


def frame(users, items) -> pl.DataFrame:
    n = len(users)
    out = pl.DataFrame(
        {
            "user_id": np.asarray(users, np.int64),
            "item_id": np.asarray(items, np.int64),
            "event_type": ["view"] * n,
            "value": np.ones(n),
            "ts": [T0 + timedelta(minutes=i) for i in range(n)],
            "session_id": pl.Series([None] * n, dtype=pl.Int64),
            "source": ["test"] * n,
            "seq": np.arange(n, dtype=np.int64),
        }
    ).with_columns(pl.col("ts").cast(pl.Datetime("us")), pl.col("ts").dt.date().alias("event_date"))
    return conform(out.select(list(INTERACTION_SCHEMA)), INTERACTION_SCHEMA)


def planted(seed: int = 0, n_users: int = 300):
    """(history, head item ids, {user: (kept item, held-back partner)}) with the head known by design."""
    rng = np.random.default_rng(seed)
    ids = rng.choice(np.arange(1_000, 100_000), N_HEAD + N_TAIL, replace=False)  # scrambled ids
    head_ids, tail_ids = ids[:N_HEAD], ids[N_HEAD:]
    users, items, probes = [], [], {}
    for u in range(n_users):
        uid = 50_000 + 7 * u
        pairs = rng.choice(N_HEAD // 2, 2, replace=False)
        rows = []
        for j, p in enumerate(pairs):
            a, b = head_ids[2 * p], head_ids[2 * p + 1]
            if j == 1 and u % 3 == 0:  # hold back one partner: EASE must put it first
                rows.append(a)
                probes[uid] = (a, b)
            else:
                rows.extend([a, b])
        rows.extend(tail_ids[rng.choice(N_TAIL, 1 + u % 2, replace=False)])
        rng.shuffle(rows)
        users.extend([uid] * len(rows))
        items.extend(rows)
    # a few users with tail items only: unknown to head-mode EASE (popularity of the head)
    for u in range(5):
        users.extend([90_000 + u] * 2)
        items.extend(tail_ids[[u, u + 5]])
    return frame(users, items), set(head_ids.tolist()), probes


@pytest.fixture(scope="module")
def data():
    return planted()


def old_fit_recommend(history: pl.DataFrame, users, k: int, l2: float = 250.0) -> pl.DataFrame:
    """EASE as the channel computed it before head mode existed (full catalogue, no head)."""
    items_ = IdIndex.from_values(history["item_id"])
    users_ = IdIndex.from_values(history["user_id"])
    X = interaction_matrix(history, users_, items_, binary=True)
    B = ease_weights(X, l2)
    pop = scaled(popularity_vector(history, items_))
    return recommend_dense(users, k, users_, items_, lambda p: np.asarray(X[p].astype(np.float64) @ B), X, pop, 1024)


def test_full_mode_when_the_catalogue_fits_is_unchanged(data):
    history, _, _ = data
    n_items = history["item_id"].n_unique()
    users = history["user_id"].unique(maintain_order=True).to_list() + [12345]  # one unknown user
    before = old_fit_recommend(history, users, k=15)
    for max_items in (n_items, n_items + 1, 10**9):
        channel = EASEChannel(max_items=max_items).fit(history)
        assert channel.mode_ == "full" and channel.n_head_items_ == channel.n_items_ == n_items
        assert channel.head_interaction_share_ == 1.0
        assert channel.recommend(users, k=15).equals(before)  # scores bit for bit
    X = interaction_matrix(history, channel.users_, channel.items_, binary=True)
    np.testing.assert_array_equal(channel.B_, ease_weights(X, 250.0))


def test_head_mode_fits_the_planted_head_and_equals_ease_on_the_restricted_history(data):
    history, head_ids, probes = data
    n_items = history["item_id"].n_unique()
    logs = []
    runtime = type("R", (), {"log": staticmethod(logs.append)})()
    channel = EASEChannel(max_items=N_HEAD).fit(history, runtime=runtime)
    assert channel.mode_ == "head" and channel.n_items_ == n_items == N_HEAD + N_TAIL
    assert channel.n_head_items_ == N_HEAD and channel.B_.shape == (N_HEAD, N_HEAD)
    assert set(channel.items_.ids.tolist()) == head_ids
    expected_share = history["item_id"].is_in(list(head_ids)).mean()
    assert channel.head_interaction_share_ == pytest.approx(expected_share, abs=1e-12)
    assert 0.5 < expected_share < 1.0
    info = channel.fit_info()
    assert info["mode"] == "head" and info["n_head_items"] == N_HEAD and info["n_items"] == n_items
    assert any("head mode" in line and f"{expected_share:.1%}" in line for line in logs)

    users = history["user_id"].unique(maintain_order=True)
    recs = channel.recommend(users, k=30)
    assert set(recs["item_id"].to_list()) <= head_ids  # never a tail item
    assert recs["user_id"].n_unique() == users.len()  # tail-only users still get (head popularity) candidates

    # exactly a full EASE on the history restricted to the head items
    restricted = history.filter(pl.col("item_id").is_in(list(head_ids)))
    full = EASEChannel(max_items=10**9).fit(restricted)
    assert full.mode_ == "full"
    assert recs.equals(full.recommend(users, k=30))

    # the planted structure survives: a held-back partner comes first
    top1 = channel.recommend(list(probes), k=1)
    hits = np.mean([dict(zip(top1["user_id"], top1["item_id"]))[u] == b for u, (_, b) in probes.items()])
    assert hits > 0.9


def test_head_mode_search_reuses_one_gram_and_equals_fresh_fits(data):
    history, _, _ = data
    settings = [{"l2": 10.0}, {"l2": 250.0}]
    make = lambda s: EASEChannel(max_items=N_HEAD, **s)  # noqa: E731
    users = history["user_id"].unique(maintain_order=True)
    for setting, channel in make(settings[0]).fit_settings(make, settings, history):
        assert channel.mode_ == "head"
        assert channel.recommend(users, k=10).equals(make(setting).fit(history).recommend(users, k=10))


def test_head_ties_go_to_first_appearance_never_to_the_id():
    # counts: 7 -> 3 rows; 9, 5, 8 -> 2 rows each (9 appears first, and has the largest id); 1 -> 1 row
    history = frame([1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6], [7, 9, 7, 5, 7, 8, 9, 5, 8, 1, 6])
    items = IdIndex.from_values(history["item_id"])
    head, counts = head_positions(history, items, 2)
    assert sorted(items.ids[head].tolist()) == [7, 9]
    assert counts[items.positions([7, 9, 5, 8, 1, 6])].tolist() == [3, 2, 2, 2, 1, 1]
    channel = EASEChannel(max_items=2).fit(history)
    assert sorted(channel.items_.ids.tolist()) == [7, 9]
    assert channel.head_interaction_share_ == pytest.approx(5 / 11)


def test_head_mode_is_invariant_to_relabelling_ids(data):
    history, _, _ = data
    rng = np.random.default_rng(1)
    item_ids = history["item_id"].unique().sort().to_numpy()
    user_ids = history["user_id"].unique().sort().to_numpy()
    # reverse the id order of items (so any tie broken by id flips) and scramble users
    item_map = dict(zip(item_ids.tolist(), (10**6 - item_ids).tolist()))
    user_map = dict(zip(user_ids.tolist(), rng.permutation(user_ids + 10**6).tolist()))
    relabelled = history.with_columns(
        pl.col("item_id").replace_strict(item_map, return_dtype=pl.Int64),
        pl.col("user_id").replace_strict(user_map, return_dtype=pl.Int64),
    )
    item_back = {v: k for k, v in item_map.items()}
    user_back = {v: k for k, v in user_map.items()}
    # the boundary falls inside a run of equal counts: 25 items (the head and some tied tail items)
    counts = history.group_by("item_id").len()["len"].sort(descending=True).to_list()
    assert counts[24] == counts[25], "the test wants a tie at the head boundary"
    for max_items in (N_HEAD, 25, 10**9):
        a = EASEChannel(max_items=max_items).fit(history)
        b = EASEChannel(max_items=max_items).fit(relabelled)
        assert b.head_interaction_share_ == a.head_interaction_share_
        assert sorted(item_back[i] for i in b.items_.ids.tolist()) == sorted(a.items_.ids.tolist())
        users = history["user_id"].unique(maintain_order=True)
        ra = a.recommend(users, k=20)
        rb = b.recommend(users.replace_strict(user_map, return_dtype=pl.Int64), k=20).with_columns(
            pl.col("user_id").replace_strict(user_back, return_dtype=pl.Int64),
            pl.col("item_id").replace_strict(item_back, return_dtype=pl.Int64),
        )
        assert ra.equals(rb)


def test_max_items_must_be_positive():
    with pytest.raises(ValueError, match="max_items"):
        EASEChannel(max_items=0)
