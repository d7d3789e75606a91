"""Candidate pool: fusion keeps every channel's top items when it cuts, is deterministic, and keeps
the rrf order; the funnel table puts the pool's recall next to each channel's."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from recsys.pool import build_pool, funnel_ks, funnel_table, list_depth, pool_as_recs


def _recs(user_items: dict[int, list[int]]) -> pl.DataFrame:
    """One channel's recommendations: for each user the items best first (score falls with rank)."""
    rows = [(u, i, float(len(items) - r), r + 1) for u, items in user_items.items() for r, i in enumerate(items)]
    return pl.DataFrame(rows, schema={"user_id": pl.Int64, "item_id": pl.Int64, "score": pl.Float64, "rank": pl.Int32}, orient="row")


def _world(seed: int = 0, n_users: int = 5) -> dict[str, pl.DataFrame]:
    """Three channels that agree with each other (a, b, c share one item order, shuffled a little)
    and one loner ('loner') whose items no other channel retrieves."""
    rng = np.random.default_rng(seed)
    shared, channels = list(range(100, 160)), {}
    for name in ("a", "b", "c"):
        lists = {}
        for u in range(1, n_users + 1):
            order = np.argsort(np.arange(len(shared)) + rng.normal(0, 3, len(shared)))
            lists[u] = [shared[j] for j in order]
        channels[name] = _recs(lists)
    channels["loner"] = _recs({u: list(range(1000 + 100 * u, 1000 + 100 * u + 30)) for u in range(1, n_users + 1)})
    return channels


def test_each_channels_top_items_survive_a_small_max_size():
    channels = _world()
    plain = build_pool(channels, per_channel=100, max_size=25, keep_top=0)
    kept = build_pool(channels, per_channel=100, max_size=25, keep_top=5)
    loner_top = channels["loner"].filter(pl.col("rank") <= 5).select("user_id", "item_id")
    # plain rrf truncation loses the loner's best items: three agreeing channels outvote it
    assert plain.join(loner_top, on=["user_id", "item_id"]).height < loner_top.height
    for name, recs in channels.items():
        top = recs.filter(pl.col("rank") <= 5).select("user_id", "item_id")
        assert kept.join(top, on=["user_id", "item_id"]).height == top.height, name
    assert kept.group_by("user_id").len()["len"].max() == 25  # max_size still bounds the pool
    # the kept items are ordered by rrf, pool_rank 1..n per user
    assert kept.group_by("user_id").agg((pl.col("rrf").diff() <= 0).all().alias("ok"))["ok"].all()
    assert kept.group_by("user_id").agg((pl.col("pool_rank") == pl.int_range(1, pl.len() + 1)).all().alias("ok"))["ok"].all()


def test_max_size_is_a_hard_bound_and_channels_keep_their_best_depth_by_depth():
    channels = _world()
    pool = build_pool(channels, per_channel=100, max_size=8, keep_top=20)  # 4 channels x 20 > 8
    assert pool.group_by("user_id").len()["len"].max() == 8
    for name, recs in channels.items():  # every channel keeps at least its top max_size // channels
        top = recs.filter(pl.col("rank") <= 2).select("user_id", "item_id")
        assert pool.join(top, on=["user_id", "item_id"]).height == top.height, name


def test_pool_is_deterministic_and_free_of_input_order():
    channels = _world(seed=3)
    first = build_pool(channels, per_channel=40, max_size=30, keep_top=6)
    shuffled = {n: r.sample(fraction=1.0, shuffle=True, seed=9) for n, r in channels.items()}
    assert first.equals(build_pool(channels, per_channel=40, max_size=30, keep_top=6))
    assert first.equals(build_pool(shuffled, per_channel=40, max_size=30, keep_top=6))


def test_nothing_cut_means_keep_top_changes_nothing():
    channels = _world(seed=1)
    base = build_pool(channels, per_channel=100, max_size=10_000, keep_top=0)
    for keep_top in (1, 5, 50):
        assert build_pool(channels, per_channel=100, max_size=10_000, keep_top=keep_top).equals(base)
    # pool_rank is the rrf order (ties by channel ranks), never the item id
    expected = base.sort(
        ["user_id", "rrf", "a__rank", "b__rank", "c__rank", "loner__rank"],
        descending=[False, True, False, False, False, False],
        nulls_last=True,
    )
    assert base.select("user_id", "item_id").equals(expected.select("user_id", "item_id"))
    assert base.filter(pl.col("rrf").diff().over("user_id") > 0).height == 0


def test_build_pool_validates_sizes():
    with pytest.raises(ValueError):
        build_pool(_world(), max_size=0)
    with pytest.raises(ValueError):
        build_pool(_world(), keep_top=-1)


def test_funnel_table_puts_the_pool_at_full_size_next_to_each_channel():
    channels = _world(n_users=2)
    pool = build_pool(channels, per_channel=50, max_size=70, keep_top=5)
    depths = {"a": list_depth(channels["a"]), "loner": list_depth(channels["loner"]), "pool": list_depth(pool_as_recs(pool))}
    assert depths == {"a": 60, "loner": 30, "pool": 70}
    assert funnel_ks((10, 50), 70) == [10, 50, 70] and funnel_ks((10, 50), 50) == [10, 50]
    rows = pl.DataFrame(
        [(s, m, k, v) for s in depths for m in ("recall", "hit_rate", "ndcg") for k, v in ((10, 0.1), (50, 0.2), (depths[s], 0.3))],
        schema={"stage": pl.Utf8, "metric": pl.Utf8, "k": pl.Int32, "value": pl.Float64},
        orient="row",
    ).unique(["stage", "metric", "k"], keep="first")
    table = funnel_table(rows, depths, ks=(10, 50))
    assert table["stage"].to_list() == ["a", "loner", "pool"]
    assert table.columns == ["stage", "depth", "recall@10", "recall@50", "recall@full", "hit_rate@10", "hit_rate@50", "hit_rate@full"]
    assert table.filter(pl.col("stage") == "pool")["recall@full"].item() == 0.3
