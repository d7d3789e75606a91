"""Per-epoch sample budgets of the neural models (two-tower, sequence ranker, PRS helper), small and fast."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
import torch

from recsys.channels.two_tower import TwoTowerChannel
from recsys.runtime import TorchRuntime, capped_subset, epoch_sample
from recsys.schema import INTERACTION_SCHEMA, conform
from recsys.synthetic import SyntheticConfig, SyntheticWorld, generate_day

RUNTIME = TorchRuntime(threads=1, seed=0, log=lambda msg: None)


def test_epoch_sample_is_the_former_permutation_within_budget_and_a_fresh_cut_beyond():
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    assert np.array_equal(epoch_sample(50, 50, g()), torch.randperm(50, generator=g()).numpy())
    assert np.array_equal(epoch_sample(50, None, np.random.default_rng(1)), np.random.default_rng(1).permutation(50))
    rng = np.random.default_rng(0)
    a, b = epoch_sample(1000, 100, rng), epoch_sample(1000, 100, rng)
    assert len(a) == len(b) == 100 and len(set(a)) == 100 and set(a) != set(b)  # a fresh sample per epoch
    assert np.array_equal(a, epoch_sample(1000, 100, np.random.default_rng(0)))  # seeded
    assert np.array_equal(capped_subset(10, 20, 0), np.arange(10))
    sub = capped_subset(1000, 30, 0)
    assert len(sub) == 30 and np.all(np.diff(sub) > 0) and np.array_equal(sub, capped_subset(1000, 30, 0))


@pytest.fixture(scope="module")
def synthetic():
    world = SyntheticWorld.build(SyntheticConfig(n_interactions=6_000, n_days=6, start=date(2017, 11, 25)))
    history = pl.concat([generate_day(world, world.config.start + timedelta(days=d)) for d in range(6)])
    return history, world.items()


def test_two_tower_epoch_trains_on_the_budget(synthetic):
    history, items = synthetic
    model = TwoTowerChannel(dim=16, epochs=2, batch_size=256, max_samples_per_epoch=700, max_val_users=25, patience=5)
    model.fit(history, items, runtime=RUNTIME)
    assert model.n_train_rows_ > 700 and model.n_val_users_ > 25
    assert [r["n_samples"] for r in model.history_] == [700, 700]
    assert model.n_val_scored_ == 25 and all(0.0 <= r["hit_rate@50"] <= 1.0 for r in model.history_)
    assert model.recommend(history["user_id"].unique().head(5), k=10).height == 50
    clone = TwoTowerChannel.from_bytes(model.to_bytes(), runtime=RUNTIME)
    assert clone.max_samples_per_epoch == 700 and clone.history_ == model.history_


@dataclass(frozen=True)
class _CpuBf16Runtime(TorchRuntime):
    """bf16 autocast on the CPU: the dtypes ``precision='bf16'`` gives on cuda (a product under autocast is
    bf16), so those paths run on a machine without a GPU."""

    def autocast(self):
        return torch.autocast(device_type="cpu", dtype=torch.bfloat16)


def test_torch_stages_train_and_score_under_bf16_autocast(synthetic):
    """A bf16 run (ComputeResource precision='bf16' on a GPU) trains and recommends: scores leave torch as
    float32 (found on an H200: the two-tower's validation scores reached numpy as bf16 and raised)."""
    from recsys.pi2i.serve import PI2I

    history, items = synthetic
    runtime = _CpuBf16Runtime(threads=1, seed=0, log=lambda m: None)
    users = history["user_id"].unique().head(10)
    tower = TwoTowerChannel(dim=16, epochs=1, batch_size=256, max_val_users=25).fit(history, items, runtime=runtime)
    recs = tower.recommend(users, k=10)
    assert recs.height == 100 and recs["score"].is_finite().all()
    pi2i = PI2I(epochs=1, depth=50).fit(history, items=items, runtime=runtime)
    recs = pi2i.recommend(users, k=10)
    assert recs.height > 0 and recs["score"].is_finite().all()
    from recsys.rankers.sequence import SequenceRanker, SequenceRankerParams

    frame, seq_history = _sequence_world()
    small = SequenceRankerParams(feature_cols=(), epochs=1, max_len=6, hidden=16, layers=1, mlp_hidden=16, batch_users=8)
    ranker = SequenceRanker(small).fit(frame, seq_history, runtime=runtime)
    assert 0.0 <= ranker.valid_ndcg10 <= 1.0 and np.isfinite(ranker.predict(frame, seq_history, runtime)).all()


def test_two_tower_within_budget_trains_as_without_one(synthetic):
    history, items = synthetic
    fit = lambda **kw: TwoTowerChannel(dim=16, epochs=1, batch_size=256, **kw).fit(history, items, runtime=RUNTIME)  # noqa: E731
    capped, free = fit(max_samples_per_epoch=10**9, max_val_users=10**9), fit(max_samples_per_epoch=None, max_val_users=None)
    assert capped.history_ == free.history_ and capped.history_[0]["n_samples"] == free.n_train_rows_
    users = history["user_id"].unique().head(20)
    assert capped.recommend(users, k=10).equals(free.recommend(users, k=10))


def _sequence_world(n_users: int = 120, n_items: int = 60, n_cand: int = 12, n_hist: int = 6):
    rng = np.random.default_rng(0)
    t0 = dt.datetime(2024, 1, 1)
    hu = np.repeat(np.arange(1, n_users + 1), n_hist)
    history = conform(
        pl.DataFrame(
            {
                "user_id": hu,
                "item_id": rng.integers(1, n_items + 1, len(hu)),
                "event_type": ["click"] * len(hu),
                "value": np.ones(len(hu)),
                "ts": [t0 + dt.timedelta(hours=int(h)) for h in range(len(hu))],
                "session_id": [None] * len(hu),
                "source": ["test"] * len(hu),
            }
        ).with_columns(pl.col("ts").cast(pl.Datetime("us")), pl.col("ts").cast(pl.Datetime("us")).dt.date().alias("event_date")),
        INTERACTION_SCHEMA,
    )
    cu = np.repeat(np.arange(1, n_users + 1), n_cand)
    ci = np.concatenate([rng.choice(np.arange(1, n_items + 1), n_cand, replace=False) for _ in range(n_users)])
    label = (np.tile(np.arange(n_cand), n_users) == 0).astype(np.int32)  # one positive per user
    frame = pl.DataFrame({"user_id": cu.astype(np.int64), "item_id": ci.astype(np.int64), "label": label})
    return frame, history


def test_sequence_ranker_epoch_trains_on_the_budget():
    from recsys.rankers.sequence import SequenceRanker, SequenceRankerParams

    frame, history = _sequence_world()
    small = dict(feature_cols=(), epochs=2, max_len=6, hidden=16, layers=1, mlp_hidden=16, batch_users=8, patience=5)
    model = SequenceRanker(SequenceRankerParams(**small, max_samples_per_epoch=40, max_valid_users=10)).fit(frame, history, runtime=RUNTIME)
    assert model.epoch_samples == [40, 40] and len(model.train_losses) == 2
    assert model.n_valid_users > 10 and model.n_valid_scored == 10
    # every held-out user is still scored once at the end (what final_stage compares), and, this frame being under
    # oof_max_users, every other labelled user out of fold
    assert model.holdout_scores["user_id"].n_unique() == model.n_valid_users + model.n_oof_users == frame["user_id"].n_unique()
    assert 0.0 <= model.valid_ndcg10 <= 1.0
    restored = SequenceRanker.from_bytes(model.to_bytes())
    assert restored.epoch_samples == [40, 40]
    # within the budget: exactly the training without one
    a = SequenceRanker(SequenceRankerParams(**small, max_samples_per_epoch=10**9)).fit(frame, history, runtime=RUNTIME)
    b = SequenceRanker(SequenceRankerParams(**small, max_samples_per_epoch=None, max_valid_users=None)).fit(frame, history, runtime=RUNTIME)
    assert a.train_losses == b.train_losses and a.epoch_samples == b.epoch_samples == [a.epoch_samples[0]] * 2
    assert a.epoch_samples[0] == len(frame["user_id"].unique()) - a.n_valid_users
