"""Evaluating at scale (recsys.metrics.sampling): past the budget of users, a seeded uniform sample of
them, the same for every stage, drawn over an id-free order, and said in the report."""

from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest

from assets.common import sample_truth
from orchestration.summary import Outputs, RunSummary, format_summary
from recsys.metrics import bootstrap_ci, cohorts, evaluate_cohorts, item_popularity, paired_test
from recsys.metrics.sampling import UserSample, sample_note, sample_users, sample_within_size, users_in_event_order
from recsys.report import ReportData, render_report
from resources import settings

T0 = datetime(2024, 1, 1)


def _events(n_users: int, seed: int = 0) -> pl.DataFrame:
    """Target-like events: each user 1..3 events at shuffled times, ids unrelated to time."""
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.arange(10_000, 10_000 + n_users))
    per_user = rng.integers(1, 4, size=n_users)
    users = np.repeat(ids, per_user)
    n = users.size
    return pl.DataFrame(
        {
            "user_id": users.astype(np.int64),
            "item_id": rng.integers(0, 50, size=n).astype(np.int64),
            "ts": [T0 + timedelta(minutes=int(m)) for m in rng.integers(0, 5_000, size=n)],
            "seq": np.arange(n, dtype=np.int64),
        }
    )


def test_sample_has_the_exact_size_is_seeded_and_keeps_the_given_order():
    ids = pl.Series("user_id", np.arange(1_000, 0, -1), dtype=pl.Int64)  # an order that is not id order
    kept, info = sample_users(ids, budget=100, seed=7)
    again, _ = sample_users(ids, budget=100, seed=7)
    other, _ = sample_users(ids, budget=100, seed=8)
    assert kept.len() == 100 and kept.n_unique() == 100 and kept.is_in(ids.implode()).all()
    assert kept.equals(again) and not kept.equals(other)
    position = {u: i for i, u in enumerate(ids.to_list())}
    assert [position[u] for u in kept] == sorted(position[u] for u in kept)  # kept in the order given
    assert info == UserSample(n_users=1_000, n_sampled=100, budget=100, seed=7) and info.sampled
    assert info.describe() == "100 of 1,000 test users (seeded uniform sample, seed 7)"
    assert info.as_dict()["method"] == "seeded uniform sample"


def test_every_user_is_equally_likely_to_be_kept():
    n, budget, draws = 400, 40, 2_000
    counts = np.zeros(n)
    ids = pl.Series("user_id", np.arange(n), dtype=pl.Int64)
    for seed in range(draws):
        kept, _ = sample_users(ids, budget, seed)
        counts[kept.to_numpy()] += 1
    share = counts / draws  # expected budget / n = 0.1, standard error 0.0067 per user
    assert np.abs(share - 0.1).max() < 0.035
    assert abs(share[: n // 2].mean() - share[n // 2 :].mean()) < 0.005  # no drift along the order


def test_under_budget_everyone_is_kept_as_given():
    ids = pl.Series("user_id", [5, 3, 9], dtype=pl.Int64)
    for budget in (3, 50_000):
        kept, info = sample_users(ids, budget, seed=1)
        assert kept.equals(ids) and not info.sampled and info.n_sampled == 3
        assert info.describe() == "all 3 test users" and info.as_dict()["method"] == "all"


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="budget"):
        sample_users(pl.Series([1, 2]), 0)
    with pytest.raises(ValueError, match="repeat a user"):
        sample_users(pl.Series([1, 2, 1]), 1)
    with pytest.raises(ValueError, match="order columns"):
        users_in_event_order(pl.DataFrame({"user_id": [1]}))


def test_users_are_ordered_by_first_event_not_by_id():
    events = pl.DataFrame(
        {
            "user_id": [9, 1, 9, 5, 1],
            "ts": [T0, T0, T0 - timedelta(days=1), T0, T0 + timedelta(days=1)],
            "seq": [2, 1, 7, 3, 0],
        }
    )
    # 9 first (a day earlier), then at T0 by seq: 1 (seq 1), 5 (seq 3)
    assert users_in_event_order(events).to_list() == [9, 1, 5]


def test_the_sample_does_not_move_when_ids_are_relabelled():
    events = _events(3_000)
    users = events["user_id"].unique().sort()
    new = pl.Series(np.random.default_rng(5).permutation(np.arange(1, users.len() + 1)) * 7, dtype=pl.Int64)
    relabelled = events.with_columns(pl.col("user_id").replace_strict(users, new))
    kept, _ = sample_users(users_in_event_order(events), 250, seed=3)
    kept_new, _ = sample_users(users_in_event_order(relabelled), 250, seed=3)
    assert kept_new.replace_strict(new, users).to_list() == kept.to_list()


def test_every_stage_is_scored_on_the_same_sampled_users_and_stays_paired():
    target = _events(1_500)
    history = _events(1_500, seed=1).with_columns(pl.col("ts") - timedelta(days=30))
    truth = target.select("user_id", "item_id").unique()
    pop = item_popularity(history)
    rng = np.random.default_rng(2)

    def recs() -> pl.DataFrame:  # a random list of 20 items per user: each call is another stage
        users = truth["user_id"].unique().sort()
        return pl.DataFrame(
            {
                "user_id": np.repeat(users.to_numpy(), 20),
                "item_id": np.concatenate([rng.permutation(50)[:20] for _ in range(users.len())]),
                "score": np.tile(np.arange(20, 0, -1, dtype=float), users.len()),
                "rank": np.tile(np.arange(1, 21, dtype=np.int32), users.len()),
            }
        ).with_columns(pl.col("item_id").cast(pl.Int64), pl.col("user_id").cast(pl.Int64))

    sampled, info = sample_truth(target, truth, seed=0, budget=200)
    assert info.sampled and info.n_users == truth["user_id"].n_unique() and sampled["user_id"].n_unique() == 200
    members = cohorts(history, truth, pop).join(sampled.select("user_id").unique(), on="user_id", how="semi")
    per_stage = {s: evaluate_cohorts(recs(), sampled, members, pop, ks=(10,), metrics=("ndcg",), per_user=True) for s in "ab"}
    all_a, all_b = (per_stage[s].filter(pl.col("cohort") == "all") for s in "ab")
    assert set(all_a["user_id"]) == set(all_b["user_id"]) == set(sampled["user_id"])
    assert paired_test(all_a, all_b, n_boot=50)["n_users"][0] == 200  # paired on the same users: no error
    ci = bootstrap_ci(all_a, n_boot=50)
    assert ci["n_users"][0] == 200

    # a budget at least the number of users changes nothing: the very same truth, the same metrics
    same, full = sample_truth(target, truth, seed=0, budget=info.n_users)
    assert same is truth and not full.sampled and full.n_sampled == info.n_users
    lists = recs()
    whole = evaluate_cohorts(lists, truth, cohorts(history, truth, pop), pop, ks=(10,), metrics=("ndcg",))
    again = evaluate_cohorts(lists, same, cohorts(history, same, pop), pop, ks=(10,), metrics=("ndcg",))
    assert whole.equals(again)


def test_sample_note_states_size_seed_and_interval_width():
    info = UserSample(n_users=2_340, n_sampled=1_000, budget=1_000, seed=0)
    assert sample_note(info, [0.021, 0.034, None]) == (
        "1,000 of 2,340 test users (seeded uniform sample, seed 0); NDCG@10 95% interval width 0.021–0.034 across stages"
    )
    assert sample_note(info.as_dict(), [0.02]).endswith("NDCG@10 95% interval width 0.020")
    assert sample_note(None, []) == "" and sample_note(UserSample(5, 5, 10, 0), []) == "all 5 test users"


def test_the_report_and_the_run_summary_state_the_sample(tmp_path):
    rows = [
        ("r1", "test", stage, "all", "ndcg", 10, v, v - 0.01, v + 0.015, 1_000, None) for stage, v in (("lgbm_ranker", 0.3), ("pop", 0.2))
    ]
    cols = ["run_id", "fold", "stage", "cohort", "metric", "k", "value", "ci_low", "ci_high", "n_users", "cutoff"]
    metrics = pl.DataFrame(rows, schema=cols, orient="row").with_columns(
        pl.lit("ml").alias("dataset"), pl.lit("temporal").alias("protocol")
    )
    sample = UserSample(n_users=2_340, n_sampled=1_000, budget=1_000, seed=4).as_dict()
    line = "1,000 of 2,340 test users (seeded uniform sample, seed 4); NDCG@10 95% interval width 0.025"
    html = render_report(ReportData("r1", "ml", "temporal", None, metrics, sample=sample, generated_at="now"))
    assert line in html
    assert "1000 test users" in render_report(
        ReportData("r1", "ml", "temporal", None, metrics, generated_at="now")
    )  # not recorded: as before

    headline = metrics.select("stage", pl.col("value").alias("ndcg"), "ci_low", "ci_high", "n_users")
    summary = RunSummary(outputs=Outputs(tmp_path), eval_run_id="r1", headline=headline, sample=pl.DataFrame([sample]))
    assert f"Users scored: {line}" in format_summary(summary).splitlines()


def test_the_budget_setting(monkeypatch):
    monkeypatch.delenv("RECDAG_EVAL_USERS", raising=False)
    assert settings.eval_users() == 50_000
    monkeypatch.setenv("RECDAG_EVAL_USERS", "100")
    assert settings.eval_users() == 100
    monkeypatch.setenv("RECDAG_EVAL_USERS", "0")
    with pytest.raises(ValueError, match="RECDAG_EVAL_USERS='0'"):
        settings.eval_users()


def test_sample_within_size_keeps_whole_users_as_a_seeded_prefix():
    order = pl.Series("user_id", [50, 10, 40, 20, 30, 60], dtype=pl.Int64)
    sizes = pl.DataFrame({"user_id": [10, 20, 30, 40, 50, 60], "n": [5, 1, 4, 2, 3, 6]})
    kept = sample_within_size(order, sizes, budget=9, seed=0)
    n_of = dict(zip(sizes["user_id"], sizes["n"]))
    assert sum(n_of[u] for u in kept) <= 9 and kept.n_unique() == kept.len()
    assert sample_within_size(order, sizes, budget=9, seed=0).equals(kept)  # seeded
    # a prefix of one seeded permutation of positions: the next user in it would break the budget
    perm = order.gather(np.random.default_rng(0).permutation(order.len())).to_list()
    assert kept.to_list() == perm[: kept.len()] and sum(n_of[u] for u in perm[: kept.len() + 1]) > 9
    # the ``first`` users are always kept, ahead of the draw, even past the budget
    assert sample_within_size(order, sizes, budget=3, seed=0, first=pl.Series([60, 30])).to_list()[:2] == [60, 30]
    # relabelled ids, same order and sizes: the same positions
    relabel = {u: u * 7 + 1 for u in n_of}
    again = sample_within_size(order.replace_strict(relabel), sizes.with_columns(pl.col("user_id").replace_strict(relabel)), 9, 0)
    assert again.to_list() == [relabel[u] for u in kept]
    assert sample_within_size(order, sizes, budget=100).len() == 6  # everyone fits
    with pytest.raises(ValueError, match="budget"):
        sample_within_size(order, sizes, budget=0)
