"""Synthetic generator: determinism per (seed, day), Taobao-like funnel, planted structure recoverable."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from recsys.schema import INTERACTION_SCHEMA
from recsys.synthetic import SyntheticConfig, SyntheticReader, SyntheticWorld, generate_day

CFG = SyntheticConfig(n_interactions=120_000, n_days=10, seed=3)


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return SyntheticWorld.build(CFG)


@pytest.fixture(scope="module")
def all_days(world) -> pl.DataFrame:
    return pl.concat([generate_day(world, CFG.start + timedelta(days=k)) for k in range(CFG.n_days)])


def test_day_is_a_pure_function_of_seed_and_day(world):
    day = CFG.start + timedelta(days=4)
    first = generate_day(world, day)
    for k in range(4):
        generate_day(world, CFG.start + timedelta(days=k))
    assert generate_day(world, day).equals(first)
    # a fresh world (another process, another run) regenerates the same partition alone
    assert generate_day(SyntheticWorld.build(CFG), day).equals(first)
    other_seed = generate_day(SyntheticWorld.build(SyntheticConfig(**{**CFG.__dict__, "seed": 4})), day)
    assert not other_seed.equals(first)
    assert first.schema == pl.Schema(INTERACTION_SCHEMA)
    assert first["ts"].is_sorted() and first["event_date"].unique().to_list() == [day]
    assert first["session_id"].null_count() == 0


def test_volume_and_taobao_like_funnel(all_days):
    assert abs(all_days.height - CFG.n_interactions) < 0.1 * CFG.n_interactions
    share = dict(all_days["event_type"].value_counts(normalize=True).iter_rows())
    assert share["view"] > 0.8 and share["view"] > 10 * share["cart"]
    assert share["cart"] > share["fav"] > share["buy"] > 0.005
    # funnel rows follow a view of the same item in the same session
    views = all_days.filter(pl.col("event_type") == "view").select("session_id", "item_id").unique()
    after = all_days.filter(pl.col("event_type") != "view").join(views, on=["session_id", "item_id"], how="anti")
    assert after.height == 0


def test_covisitation_recovers_planted_neighbours(world, all_days):
    views = all_days.filter(pl.col("event_type") == "view").sort("session_id", "ts")
    pairs = (
        views.with_columns(pl.col("item_id").shift(-1).over("session_id").alias("next_id"))
        .drop_nulls("next_id")
        .filter(pl.col("next_id") != pl.col("item_id"))
    )
    counts = pairs.group_by("item_id", "next_id").len()
    frequent = pairs.group_by("item_id").len().filter(pl.col("len") >= 20).select("item_id")
    top = counts.join(frequent, on="item_id").sort("len", "next_id", descending=True).group_by("item_id").first()
    assert top.height >= 100
    planted = world.next_items[top["item_id"].to_numpy() - 1]
    hit = (planted == top["next_id"].to_numpy()[:, None]).any(axis=1).mean()
    chance = CFG.n_next / CFG.items
    assert hit > 0.8 and hit > 100 * chance
    # the planted graph mostly stays in the item's own category
    same = world.item_category[world.next_items - 1] == world.item_category[:, None]
    assert 0.6 < same.mean() < 0.95


def test_buy_rate_rises_with_affinity(world, all_days):
    views = all_days.filter(pl.col("event_type") == "view")
    bought = all_days.filter(pl.col("event_type") == "buy").select("session_id", "item_id").unique()
    labelled = views.join(bought.with_columns(pl.lit(1).alias("buy")), on=["session_id", "item_id"], how="left")
    a = world.affinity(labelled["user_id"].to_numpy(), labelled["item_id"].to_numpy())
    y = labelled["buy"].fill_null(0).to_numpy()
    q = np.quantile(a, [0.25, 0.5, 0.75])
    rates = [y[np.digitize(a, q) == k].mean() for k in range(4)]
    assert all(lo < hi for lo, hi in zip(rates, rates[1:]))
    assert rates[3] > 10 * rates[1]
    # viewed items match the user's taste far more than random pairs do
    rng = np.random.default_rng(0)
    random_a = world.affinity(rng.integers(1, CFG.users + 1, 20_000), rng.integers(1, CFG.items + 1, 20_000))
    assert a.mean() > 1.5 * random_a.mean()


def test_user_attributes_signal_and_noise(world):
    users = world.users()
    main_taste = world.taste_categories[:, 0]
    age_match = (users["age_bucket"].to_numpy() == main_taste % 6).mean()
    assert age_match > 0.6  # chance is 1/6
    # city tier is independent of taste: its match rate stays near chance (1/4)
    city_match = (users["city_tier"].to_numpy() - 1 == main_taste % 4).mean()
    assert abs(city_match - 0.25) < 0.05
    items = world.items()
    assert items.columns == ["item_id", "category_id", "title", "price_bucket"]
    assert items["title"].n_unique() > 0.9 * items.height


def test_reader_roundtrip_and_corruption_quarantine(world):
    bad_day = CFG.start + timedelta(days=1)
    reader = SyntheticReader(CFG, corrupt_days={bad_day: 0.02}, world=world)
    assert reader.date_bounds() == (CFG.start, CFG.start + timedelta(days=CFG.n_days - 1))
    clean = reader.read_window(CFG.start, CFG.start)
    # rendering to Taobao lines and parsing back loses nothing
    assert clean.interactions.equals(generate_day(world, CFG.start)) and clean.quarantine.height == 0

    batch = reader.read_window(bad_day, bad_day)
    generated = generate_day(world, bad_day)
    assert batch.n_read == generated.height == batch.interactions.height + batch.quarantine.height
    assert batch.quarantine.height == round(0.02 * generated.height)
    reason = batch.quarantine["reason"]
    kinds = [
        reason.str.starts_with("column count 5, expected 6"),
        reason.str.starts_with("behavior_type 'zz' not in pv|cart|fav|buy"),
        reason.str.contains(r"^user_id -\d+ is negative$"),
        reason.str.contains(r"^ts .* outside partition " + bad_day.isoformat()),
    ]
    assert sum(k.sum() for k in kinds) == reason.len() and min(k.sum() for k in kinds) >= reason.len() // 4
    assert set(batch.quarantine["partition"]) == {bad_day.isoformat()}
    # the loaded rows are exactly the generated rows whose lines were not corrupted
    kept = generated.with_row_index("line_no", offset=1).join(batch.quarantine.select("line_no"), on="line_no", how="anti").drop("line_no")
    assert batch.interactions.equals(kept)
    # a window that spans both days adds up
    both = reader.read_window(CFG.start, bad_day)
    assert both.n_read == clean.n_read + batch.n_read
