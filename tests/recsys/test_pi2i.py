"""PI2I: the relaxed index reaches more next items; PRS ranks its pool better than co-occurrence."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from recsys.channels.base import IdIndex
from recsys.channels.itemcf import ItemCFChannel, build_cooc_index, build_swing_index, user_triggers
from recsys.pi2i import PI2I, PI2IIndexChannel, build_relaxed_index, hit_rate_vs_depth
from recsys.pi2i.features import CROSS_FEATURES, event_log, item_categories, sequences, swing_at_slots, triggers_at
from recsys.pi2i.loo import own_contributions
from recsys.pi2i.model import PRSConfig, PRSModel
from recsys.pi2i.train import (
    PRSData,
    cooc_order_start,
    featurize,
    gap_us,
    pair_batch,
    pool_scores,
    pooled_logits,
    sample_candidates,
    training_examples,
)
from recsys.runtime import TorchRuntime
from recsys.schema import RECOMMENDATION_SCHEMA

_spec = importlib.util.spec_from_file_location("planted_walks", Path(__file__).with_name("test_itemcf.py"))
_planted = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_planted)
make_planted_walks, leave_last_out, hit_rate = _planted.make_planted_walks, _planted.leave_last_out, _planted.hit_rate

# Small enough to train in seconds on a shared 2-core CPU; one intra-op thread is faster there.
PRS_PARAMS = dict(depth=100, n_triggers=10, epochs=6, dim=16, hidden=(64, 32), n_negatives=16, batch_size=256, lr=3e-3)


def runtime(seed=0, logs=None):
    return TorchRuntime(seed=seed, threads=1, log=(logs.append if logs is not None else (lambda m: None)))


@pytest.fixture(scope="module")
def planted():
    history, items, users, _ = make_planted_walks(n_users=500, steps=(20, 50), seed=0)
    train, test = leave_last_out(history)
    return train, test, items, users


@pytest.fixture(scope="module")
def trained(planted):
    train, _, items, users = planted
    logs: list[str] = []
    model = PI2I(**PRS_PARAMS).fit(train, items=items, users=users, user_features=["segment", "noise"], runtime=runtime(0, logs))
    return model, logs


def test_relaxed_depth_raises_pool_hit_rate(planted):
    train, test, _, _ = planted
    index = build_relaxed_index(train, depth=100)
    curve = hit_rate_vs_depth(index, train, test, depths=(5, 10, 20, 50, 100))
    assert curve.columns == ["depth", "hit_rate", "recall", "avg_pool_size", "n_users"]
    assert curve["n_users"][0] == test["user_id"].n_unique()
    assert curve["hit_rate"].is_sorted() and curve["avg_pool_size"].is_sorted()
    by_depth = dict(zip(curve["depth"], curve["hit_rate"]))
    # Seeds 0-2: ≈0.72 at depth 10 → ≈0.98 at depth 100; the uniform cut loses a quarter of next items.
    assert by_depth[100] > by_depth[10] + 0.15
    assert by_depth[100] > 0.9


def test_sequences_are_left_padded_and_causal(planted):
    train, _, _, _ = planted
    from recsys.channels.base import IdIndex

    users, items = IdIndex.from_values(train["user_id"]), IdIndex.from_values(train["item_id"])
    log = event_log(train, users, items)
    u = np.array([0, 0])
    end = np.array([log.indptr[0] + 2, log.indptr[1]])
    seq = sequences(log, u, end, 5)
    assert seq[0].tolist() == [0, 0, 0, log.item_pos[0] + 1, log.item_pos[1] + 1]
    assert seq[1].tolist() == (log.item_pos[log.indptr[1] - 5 : log.indptr[1]] + 1).tolist()
    assert np.all(np.diff(log.t[log.indptr[0] : log.indptr[1]]) >= 0)


def test_prs_attention_query_depends_on_target():
    cfg = PRSConfig(n_items=20, n_categories=3, user_cardinalities=[4], n_cross=len(CROSS_FEATURES), dim=8, hidden=(16,), seq_len=6)
    torch.manual_seed(0)
    model = PRSModel(cfg, torch.randint(1, 4, (20,))).eval()
    seq = torch.tensor([[0, 0, 3, 4, 5, 6]])
    cands = torch.tensor([[7, 8]])
    args = (torch.tensor([[1]]), torch.tensor([2]), cands, torch.zeros(1, 2, len(CROSS_FEATURES)))
    out = model(*args, seq)
    assert out.shape == (1, 2) and torch.isfinite(out).all()
    # The behaviour sequence matters, and an all-padding sequence is still defined.
    assert not torch.allclose(out, model(*args, torch.tensor([[0, 0, 9, 10, 11, 12]])))
    assert torch.isfinite(model(*args, torch.zeros(1, 6, dtype=torch.long))).all()


def test_factorized_forward_equals_concatenation_form():
    # The fast path splits first layers by input block and dedups candidate items; same function.
    cfg = PRSConfig(n_items=50, n_categories=4, user_cardinalities=[3, 5], n_cross=len(CROSS_FEATURES), dim=8, hidden=(16, 8), seq_len=7)
    torch.manual_seed(1)
    model = PRSModel(cfg, torch.randint(0, 5, (50,))).eval()
    b, c = 6, 11
    user = torch.randint(0, 4, (b, 2))
    trig = torch.randint(1, 51, (b,))
    cands = torch.randint(0, 51, (b, c))
    cands[0, :3] = 17  # repeated candidate items within and across rows
    cross = torch.randn(b, c, len(CROSS_FEATURES))
    seq = torch.randint(0, 51, (b, 7))
    seq[1] = 0  # an empty history still attends to the always-visible slot
    seq[2, :5] = 0
    with torch.no_grad():
        ref = model.forward_reference(user, trig, cands, cross, seq)
        torch.testing.assert_close(model(user, trig, cands, cross, seq), ref, rtol=1e-5, atol=1e-5)
        # Serving form: rows share sequences by index instead of repeating them.
        shared = torch.tensor([0, 0, 1, 2, 1, 0])
        torch.testing.assert_close(
            model(user, trig, cands, cross, seq[:3], example_seq=shared),
            model.forward_reference(user, trig, cands, cross, seq[:3][shared]),
            rtol=1e-5,
            atol=1e-5,
        )
        # Training form: one trigger per pair (packed rows); the same function of each pair.
        per_pair = model(user, trig[:, None].expand(b, c), cands, cross, seq)
        torch.testing.assert_close(per_pair, ref, rtol=1e-5, atol=1e-5)
        mixed = trig[:, None].expand(b, c).clone()
        mixed[:, 5:] = trig.flip(0)[:, None]
        torch.testing.assert_close(
            model(user, mixed, cands, cross, seq)[:, 5:],
            model.forward_reference(user, trig.flip(0), cands, cross, seq)[:, 5:],
            rtol=1e-5,
            atol=1e-5,
        )


def test_swing_at_slots_matches_pairwise_lookup(planted):
    train, _, _, _ = planted
    cooc = build_relaxed_index(train, depth=60)
    swing = build_swing_index(train, 20, items=cooc.items)
    at = swing_at_slots(cooc, swing)
    trig, slot = np.nonzero(cooc.targets >= 0)
    score, _, rank = swing.lookup(trig, cooc.targets[trig, slot])
    inside = rank < swing.depth
    assert 0 < inside.sum() < len(inside)
    np.testing.assert_allclose(at[trig, slot][inside], score[inside])
    assert np.all(at[trig, slot][~inside] == -1.0) and np.all(at[cooc.targets < 0] == -1.0)


def test_prs_trains_and_beats_cooc_order_on_validation(trained):
    model, logs = trained
    report = model.report_["epochs"]
    start, epochs = report[0], [e for e in report if e["epoch"] >= 1]
    # The fit starts at the co-occurrence order (epoch 0), which competes for the best epoch.
    assert start["epoch"] == 0 and abs(start["val_hit"] - start["cooc_hit"]) < 0.02
    assert epochs[-1]["loss"] < epochs[0]["loss"] - 0.2
    assert any("epoch 1/6 loss" in line and "val hit@10" in line for line in logs)
    best = max(e["val_hit"] for e in epochs)
    # Same held-out examples, same pools (leave-one-out features): seed 0 gave 0.463 vs 0.398 for the co-occurrence order.
    assert best > start["cooc_hit"] + 0.03
    assert model.report_["best_epoch"] >= 1


def test_prs_beats_uniform_itemcf_and_relaxed_cooc_at_equal_k(planted, trained):
    train, test, items, _ = planted
    model, _ = trained
    users = test["user_id"].unique().sort()
    recs = model.recommend(users, k=10)
    assert recs.schema == pl.Schema(RECOMMENDATION_SCHEMA)
    assert recs.join(train, on=["user_id", "item_id"], how="semi").height == 0
    prs = hit_rate(recs, test, 10)
    uniform = max(hit_rate(ItemCFChannel(depth=d).fit(train, items).recommend(users, 10), test, 10) for d in (10, 30))
    relaxed = max(
        hit_rate(PI2IIndexChannel(depth=100, aggregate=a).fit(train, items).recommend(users, 10), test, 10) for a in ("sum", "max")
    )
    # Old PRS, seeds 0-2 (≈280 test users): PRS − best uniform item CF = +0.08, PRS − relaxed cooc = +0.03..0.07;
    # the serving-shaped PRS started at the cooc order (hit@10 0.44 at seed 0) passes the same margins at seed 0.
    assert prs > uniform + 0.03
    assert prs > relaxed + 0.02


def test_score_pairs_and_bytes_roundtrip(planted, trained):
    _, test, _, _ = planted
    model, _ = trained
    users = test["user_id"].unique().sort().head(40)
    recs = model.recommend(users, k=20)
    restored = PI2I.from_bytes(model.to_bytes(), runtime=runtime())
    assert restored.recommend(users, k=20).equals(recs)
    pairs = recs.select("user_id", "item_id").vstack(pl.DataFrame({"user_id": [users[0]], "item_id": [-1]}))
    scored = restored.score_pairs(pairs)
    assert scored.height == pairs.height and scored["pi2i_score"].null_count() == 1
    joined = recs.join(scored, on=["user_id", "item_id"])
    np.testing.assert_allclose(joined["score"], joined["pi2i_score"], rtol=1e-5)


def test_fit_is_deterministic(planted):
    train, _, items, users = planted
    small = train.filter(pl.col("user_id") <= 120)
    params = PRS_PARAMS | dict(epochs=1)
    a = PI2I(**params).fit(small, items=items, users=users, user_features=["segment"], runtime=runtime(7))
    b = PI2I(**params).fit(small, items=items, users=users, user_features=["segment"], runtime=runtime(7))
    ids = small["user_id"].unique().sort()
    assert a.recommend(ids, 10).equals(b.recommend(ids, 10))
    assert a.report_["epochs"] == b.report_["epochs"]


# ----------------------------------------------------------------------------------------------
# Training shaped like serving: triggers, leave-one-out features, one merge
# ----------------------------------------------------------------------------------------------


def _prs_data(history, items_frame, depth=60, n_triggers=10, seq_len=12):
    """PRSData as PI2I.fit builds it (leave-one-out cells included), without training."""
    users = IdIndex.from_values(history["user_id"])
    items = IdIndex.from_values(pl.concat([history["item_id"], items_frame["item_id"]]))
    cooc = build_cooc_index(history, depth, items=items)
    swing = build_swing_index(history, depth, items=items)
    cats, _ = item_categories(items, items_frame)
    log = event_log(history, users, items)
    own = own_contributions(history, users, items)
    codes = np.zeros((len(users), 0), np.int32)
    data = PRSData(
        cooc,
        swing_at_slots(cooc, swing),
        cats,
        codes,
        log,
        n_triggers,
        seq_len,
        own=own,
        swing_count_at=swing_at_slots(cooc, swing, "counts"),
    )
    return data, users, items


@pytest.fixture(scope="module")
def prs_data(planted):
    train, _, items, _ = planted
    return _prs_data(train, items)


def test_training_examples_carry_serving_triggers(planted, prs_data):
    train, _, _, _ = planted
    data, users, items = prs_data
    log = data.log
    ex = training_examples(data, max_examples=None)
    n_trig = (ex.trig >= 0).sum(axis=1)
    # Several triggers per target, with every recency rank in use (not consecutive pairs only).
    assert n_trig.max() == 10 and n_trig.mean() > 5
    assert len(np.unique(ex.user)) > 400
    gaps = ex.gap_us(log)
    rng = np.random.default_rng(0)
    for e in rng.choice(len(ex), 300, replace=False):
        u, p = int(ex.user[e]), int(ex.end[e])
        start = int(log.indptr[u])
        expected, seen = [], set()
        for k in range(p - 1, start - 1, -1):  # brute force: walk back, keep each item's last touch
            if log.item_pos[k] not in seen:
                seen.add(int(log.item_pos[k]))
                expected.append(k)
        expected = expected[:10]
        got = ex.trig_pos[e][ex.trig_pos[e] >= 0]
        assert got.tolist() == expected
        assert ex.trig[e][: len(expected)].tolist() == log.item_pos[expected].tolist()
        # Gap = the user's latest event before the target − the trigger's last touch (serving's definition).
        np.testing.assert_array_equal(gaps[e][: len(expected)], log.t[p - 1] - log.t[expected])
        assert ex.target[e] == log.item_pos[p] and ex.target[e] not in seen  # the target is new to the user
    # At the end of each user's log the same function gives item CF's serving triggers.
    all_users = np.arange(len(users))
    trig, pos = triggers_at(log, all_users, log.indptr[all_users + 1], 10)
    ref = user_triggers(train, users, items, 10)
    r, c = np.nonzero(trig >= 0)
    np.testing.assert_array_equal(r, ref.user_pos)
    np.testing.assert_array_equal(c, ref.recency)
    np.testing.assert_array_equal(trig[r, c], ref.item_pos)
    np.testing.assert_array_equal(log.t[pos[r, c]], ref.t_last)
    np.testing.assert_array_equal(log.t[log.indptr[all_users + 1] - 1], ref.user_t_last)


def _tiny_history():
    # User 1 alone co-visits items 10 → 11; users 2 and 3 both co-visit 10 → 12.
    rows = [(1, 10, 0), (1, 11, 60), (2, 10, 0), (2, 12, 60), (3, 10, 0), (3, 12, 60), (4, 10, 0), (4, 13, 60), (5, 10, 0), (5, 13, 60)]
    frame = pl.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "event_type": "view",
            "value": 1.0,
            "ts": pl.Series([r[2] * 1_000_000 + 1_000_000_000_000 for r in rows]).cast(pl.Datetime("us")),
            "session_id": None,
            "source": "tiny",
        }
    ).with_columns(pl.col("ts").dt.date().alias("event_date"))
    from recsys.schema import INTERACTION_SCHEMA, conform

    return conform(frame, INTERACTION_SCHEMA)


def test_leave_one_out_counts_remove_the_users_own_pair():
    history = _tiny_history()
    items_frame = pl.DataFrame({"item_id": [10, 11, 12, 13], "category_id": [1, 1, 1, 1]})
    data, users, items = _prs_data(history, items_frame, depth=5, n_triggers=3, seq_len=4)
    i10, i11, i12 = items.positions(pl.Series([10, 11, 12]))
    u1, u2 = users.positions(pl.Series([1, 2]))
    score, count, slot = data.cooc.lookup(np.array([i10, i10]), np.array([i11, i12]))
    assert count.tolist() == [1.0, 2.0] and (score > 0).all()
    adj = data.loo(np.array([u1, u2, u2]), np.array([i10, i10, i10]), np.array([i11, i12, i11]), slot[[0, 1, 0]])
    # Seen by one user only: without that user the pair has no support, like a pair absent at serving.
    assert adj.count[0] == 0.0 and adj.score[0] == 0.0
    assert adj.rank[0] == (data.cooc.list_lengths()[i10] - 1)  # every other entry now ranks above it
    # Seen by two users: one left.
    assert adj.count[1] == 1.0 and 0.0 < adj.score[1] < score[1]
    # A pair the user never touched keeps the index's values exactly.
    assert adj.count[2] == count[0] and adj.score[2] == score[0] and adj.rank[2] == slot[0]
    # The cross features built from them: log1p(count) = 0 for the single-user pair.
    x = featurize(data, [u1], [i10], np.array([[slot[0]]]), [0], [0], np.zeros((1, 4), np.int32), "cpu", loo=[u1])
    assert float(x["cross"][0, 0, CROSS_FEATURES.index("log_cooc_count")]) == 0.0
    assert not bool(x["valid"][0, 0])  # and the pair is dropped, as serving would never see it
    # Training keeps only targets with support left once their user is removed.
    ex = training_examples(data, max_examples=None)
    got = sorted(zip(users.ids[ex.user].tolist(), items.ids[ex.target].tolist()))
    assert got == [(2, 12), (3, 12), (4, 13), (5, 13)]


def test_serving_and_training_build_identical_inputs(prs_data):
    data, users, _ = prs_data
    cfg = PRSConfig(
        n_items=len(data.categories), n_categories=int(data.categories.max()), n_cross=len(CROSS_FEATURES), dim=8, hidden=(16,), seq_len=12
    )
    torch.manual_seed(0)
    model = PRSModel(cfg, torch.from_numpy(data.categories)).eval()
    user = np.arange(6, dtype=np.int64)
    end = data.log.indptr[user + 1]  # the reference time is the end of the log: serving's
    trig, pos = triggers_at(data.log, user, end, data.n_triggers)
    q, c, logit, _ = pool_scores(model, data, user, end, trig, pos, "cpu", runtime())
    width = np.bincount(q, minlength=len(user)).max()
    cands = np.full((len(user), width), -1, np.int64)
    col = np.arange(len(q)) - np.searchsorted(q, q)
    cands[q, col] = c
    # Training form, leave-one-out on: no candidate is the user's, so nothing is subtracted.
    batch = pair_batch(data, user, end, trig, pos, cands, loo=True)
    b, t, k, slot, cross = batch["pairs"]
    seq = sequences(data.log, user, end, data.seq_len)
    serving = featurize(data, user[b], trig[b, t], slot[:, None], gap_us(data.log, end, pos)[b, t], t, seq[b], "cpu")
    np.testing.assert_array_equal(serving["cross"][:, 0].numpy(), cross)
    np.testing.assert_array_equal(serving["cands"][:, 0].numpy(), cands[b, k] + 1)
    np.testing.assert_array_equal(batch["seq"], seq)
    assert serving["valid"].all() and len(b) > len(q)  # candidates reached by several triggers
    with torch.no_grad():
        pooled = pooled_logits(model, batch, "cpu").numpy()
    np.testing.assert_allclose(pooled[q, col], logit, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("hard", [0.0, 0.5])
def test_negative_sampler_matches_its_correction(prs_data, hard):
    # The sampled-softmax correction (log expected count per candidate) is the sampler's own law.
    data, _, _ = prs_data
    ex = training_examples(data, max_examples=2_000, rng=np.random.default_rng(0))
    one = ex.take(np.full(20_000, int(np.argmax((ex.trig >= 0).sum(axis=1))), np.int64))
    cands = sample_candidates(np.random.default_rng(1), data, one, 16, hard)
    assert (cands >= 0).all() and (cands[:, 0] == one.target).all()
    items = np.unique(cands[:, 1:])
    freq = np.bincount(cands[:, 1:].ravel(), minlength=items.max() + 1)[items] / len(one)
    batch = pair_batch(data, one.user[:1], one.end[:1], one.trig[:1], one.trig_pos[:1], items[None, :], loo=False, n_neg=16, hard=hard)
    expected = np.exp(batch["log_q"][0])
    assert abs(expected.sum() - 16) < 1e-3
    np.testing.assert_allclose(freq, expected, rtol=0.15, atol=2e-3)


def test_start_from_cooc_order_scores_like_the_cooc_order(prs_data):
    # Wide term = log score + r log 0.8, DNN output zeroed: the pooled score is the co-occurrence order.
    data, _, _ = prs_data
    cfg = PRSConfig(
        n_items=len(data.categories), n_categories=int(data.categories.max()), n_cross=len(CROSS_FEATURES), dim=8, hidden=(16,), seq_len=12
    )
    model = PRSModel(cfg, torch.from_numpy(data.categories)).start_at(cooc_order_start(data.n_triggers)).eval()
    user = np.arange(20, dtype=np.int64)
    end = data.log.indptr[user + 1]
    trig, pos = triggers_at(data.log, user, end, data.n_triggers)
    _, _, logit, cooc = pool_scores(model, data, user, end, trig, pos, "cpu", runtime())
    # exp(score) = Σ_r 0.8^r (cooc score + 1e-4) over the triggers reaching the candidate.
    np.testing.assert_allclose(np.exp(logit), cooc, rtol=1e-4, atol=5e-4)
