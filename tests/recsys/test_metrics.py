"""Accuracy metrics equal ranx; beyond-accuracy, cohorts and bootstrap statistics behave as defined."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from ranx import Qrels, Run
from ranx import evaluate as ranx_evaluate
from scipy import stats as sps

from recsys.metrics import (
    METRICS,
    average_popularity,
    beyond_accuracy,
    bootstrap_ci,
    catalog_coverage,
    cohort_truth,
    cohorts,
    evaluate,
    evaluate_cohorts,
    exclude_seen,
    intra_list_diversity,
    item_popularity,
    novelty,
    paired_test,
)

pytestmark = pytest.mark.heavy(50)  # rough serial seconds of this module: scheduled first (tests/conftest.py)

RANX_NAME = {
    "hit_rate": "hit_rate",
    "recall": "recall",
    "precision": "precision",
    "ndcg": "ndcg",
    "mrr": "mrr",
    "map_trec": "map",
}
REC_SCHEMA = {"user_id": pl.Int64, "item_id": pl.Int64, "score": pl.Float64, "rank": pl.Int32}


def random_run(seed: int, n_users: int = 150, n_items: int = 400, zipf: bool = False):
    """Truth and recs with ragged lists, users without recs and recs for users without truth."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1) ** (1.1 if zipf else 0.0)
    popularity /= popularity.sum()
    truth_rows, rec_rows = [], []
    for u in range(n_users):
        rel = rng.choice(n_items, rng.integers(1, 40), replace=False, p=popularity)
        truth_rows += [(u, int(i)) for i in rel]
        if u % 13 == 0:
            continue  # no recommendations: must score 0
        length = int(rng.integers(1, 120))
        items = rng.choice(n_items, length, replace=False, p=popularity)
        # coarse scores: many ties, which the rank column breaks
        scores = np.round(np.sort(rng.random(length))[::-1], 1)
        rec_rows += [(u, int(i), float(s), r + 1) for r, (i, s) in enumerate(zip(items, scores))]
    for u in range(n_users, n_users + 5):  # recommendations for users outside the truth: ignored
        rec_rows += [(u, i, 1.0, i + 1) for i in range(10)]
    truth = pl.DataFrame(truth_rows, schema=["user_id", "item_id"], orient="row")
    recs = pl.DataFrame(rec_rows, schema=REC_SCHEMA, orient="row").sample(fraction=1.0, shuffle=True, seed=seed)
    return truth, recs


def ranx_scores(truth: pl.DataFrame, recs: pl.DataFrame, metric: str) -> dict[str, float]:
    qrels: dict[str, dict[str, int]] = {}
    for u, i in truth.iter_rows():
        qrels.setdefault(str(u), {})[str(i)] = 1
    run: dict[str, dict[str, float]] = {}
    # ranx orders by score: feed a strictly decreasing function of rank so ties follow rank
    for u, i, _, r in recs.iter_rows():
        run.setdefault(str(u), {})[str(i)] = 1000.0 - r
    run_obj = Run(run)
    ranx_evaluate(Qrels(qrels), run_obj, metric, make_comparable=True)
    return {q: float(v) for q, v in run_obj.scores[metric].items()}


@pytest.mark.parametrize("seed,zipf", [(0, False), (1, True)])
def test_accuracy_equals_ranx_per_user_and_on_average(seed, zipf):
    truth, recs = random_run(seed, zipf=zipf)
    ks = (1, 5, 10, 20, 50, 100)
    per_user = evaluate(recs, truth, ks=ks, metrics=METRICS, per_user=True)
    summary = evaluate(recs, truth, ks=ks, metrics=METRICS)
    n_truth_users = truth["user_id"].n_unique()
    assert (summary["n_users"] == n_truth_users).all()
    n_rel = truth.group_by("user_id").len()
    for k in ks:
        for ours, theirs in RANX_NAME.items():
            expected = ranx_scores(truth, recs, f"{theirs}@{k}")
            got = per_user.filter((pl.col("metric") == ours) & (pl.col("k") == k))
            assert got.height == n_truth_users
            diff = max(abs(expected[str(u)] - v) for u, v in got.select("user_id", "value").iter_rows())
            assert diff < 1e-9, (ours, k, diff)
            mean = summary.filter((pl.col("metric") == ours) & (pl.col("k") == k))["value"].item()
            assert mean == pytest.approx(np.mean(list(expected.values())), abs=1e-9)
        # map normalises by min(|R|, K): ranx's AP rescaled by |R| / min(|R|, K)
        ap = ranx_scores(truth, recs, f"map@{k}")
        ours_map = per_user.filter((pl.col("metric") == "map") & (pl.col("k") == k)).join(n_rel, on="user_id")
        for u, v, r in ours_map.select("user_id", "value", "len").iter_rows():
            assert v == pytest.approx(ap[str(u)] * r / min(r, k), abs=1e-9)


def test_hand_worked_list():
    # relevant {10, 20, 30}; list 10, 99, 20, 98 (ranks 1..4)
    truth = pl.DataFrame({"user_id": [1, 1, 1], "item_id": [10, 20, 30]})
    recs = pl.DataFrame(
        {"user_id": [1] * 4, "item_id": [10, 99, 20, 98], "score": [0.5] * 4, "rank": [1, 2, 3, 4]},
        schema=REC_SCHEMA,
    )
    got = {(m, k): v for m, k, v, _ in evaluate(recs, truth, ks=(2, 4), metrics=METRICS).iter_rows()}
    # hits at positions 1 and 3
    assert got[("hit_rate", 2)] == 1.0
    assert got[("recall", 4)] == pytest.approx(2 / 3)
    assert got[("precision", 4)] == pytest.approx(2 / 4)
    assert got[("mrr", 4)] == 1.0
    # DCG@4 = 1/log2(2) + 1/log2(4) = 1.5; IDCG@4 = 1 + 1/log2(3) + 1/log2(4) (min(3, 4) = 3 terms)
    assert got[("ndcg", 4)] == pytest.approx(1.5 / (1 + 1 / np.log2(3) + 0.5))
    # IDCG@2 has min(3, 2) = 2 terms: 1 + 1/log2(3); DCG@2 = 1
    assert got[("ndcg", 2)] == pytest.approx(1 / (1 + 1 / np.log2(3)))
    # AP sum@4 = P@1 + P@3 = 1 + 2/3; map divides by min(3, 4) = 3, map_trec by |R| = 3
    assert got[("map", 4)] == pytest.approx((1 + 2 / 3) / 3)
    # AP sum@2 = 1; map divides by min(3, 2) = 2 (RecBole), map_trec by 3 (ranx / trec_eval)
    assert got[("map", 2)] == pytest.approx(1 / 2)
    assert got[("map_trec", 2)] == pytest.approx(1 / 3)


def test_users_without_recs_score_zero_and_outsiders_are_ignored():
    truth = pl.DataFrame({"user_id": [1, 2], "item_id": [5, 6]})
    recs = pl.DataFrame({"user_id": [1, 3], "item_id": [5, 6], "score": [1.0, 1.0], "rank": [1, 1]}, schema=REC_SCHEMA)
    out = evaluate(recs, truth, ks=(10,), metrics=("hit_rate", "ndcg"))
    assert out["value"].to_list() == [0.5, 0.5]
    assert out["n_users"].to_list() == [2, 2]


def test_duplicate_item_in_a_list_is_an_error():
    recs = pl.DataFrame({"user_id": [1, 1], "item_id": [5, 5], "score": [1.0, 0.5], "rank": [1, 2]}, schema=REC_SCHEMA)
    with pytest.raises(ValueError, match="repeat an item"):
        evaluate(recs, pl.DataFrame({"user_id": [1], "item_id": [5]}))


def test_exclude_seen_removes_history_and_reranks():
    recs = pl.DataFrame(
        {
            "user_id": [1, 1, 1, 1, 2, 2],
            "item_id": [7, 8, 9, 10, 7, 8],
            "score": [4.0, 3, 2, 1, 2, 1],
            "rank": [1, 2, 3, 4, 1, 2],
        },
        schema=REC_SCHEMA,
    )
    history = pl.DataFrame({"user_id": [1, 2], "item_id": [8, 9]})
    out = exclude_seen(recs, history, k=2)
    assert out.select("user_id", "item_id", "rank").rows() == [(1, 7, 1), (1, 9, 2), (2, 7, 1), (2, 8, 2)]
    assert out.schema["rank"] == pl.Int32


# ---------------------------------------------------------------- beyond accuracy


def small_world():
    history = pl.DataFrame({"user_id": [1, 2, 3, 4, 1, 2], "item_id": [10, 10, 10, 10, 11, 11]})
    recs = pl.DataFrame(
        {"user_id": [1, 1, 1, 2, 2, 2], "item_id": [10, 11, 12, 10, 13, 14], "score": [1.0] * 6, "rank": [1, 2, 3, 1, 2, 3]},
        schema=REC_SCHEMA,
    )
    return history, recs


def test_coverage_novelty_and_popularity_by_hand():
    history, recs = small_world()
    pop = item_popularity(history)
    # 4 history users: item 10 seen by 4 (share 1), item 11 by 2 (share 1/2); 12, 13, 14 unseen
    assert pop.filter(pl.col("item_id") == 11)["pop_share"].item() == 0.5
    # top-2 lists {10, 11} and {10, 13} cover 3 of a 10-item catalogue
    assert catalog_coverage(recs, n_items=10, k=2) == pytest.approx(0.3)
    # novelty@2: user 1 mean(-log2 1, -log2 1/2) = 0.5; user 2: item 13 unseen counts as seen once,
    # -log2(1/4) = 2, so mean(0, 2) = 1; mean over lists = 0.75
    assert novelty(recs, pop, k=2) == pytest.approx(0.75)
    # arp@3: user 1 mean(4, 2, 0) = 2; user 2 mean(4, 0, 0) = 4/3
    assert average_popularity(recs, pop, k=3) == pytest.approx((2 + 4 / 3) / 2)
    out = beyond_accuracy(recs, pop, n_items=10, ks=(2, 3))
    assert out.filter((pl.col("metric") == "coverage") & (pl.col("k") == 3))["value"].item() == pytest.approx(0.5)


def test_intra_list_diversity_categories_by_hand():
    _, recs = small_world()
    cats = pl.DataFrame({"item_id": [10, 11, 12, 13, 14], "category_id": [1, 1, 2, 3, None]})
    # user 1: categories 1, 1, 2 -> 1 same pair of 3 -> 2/3; user 2: 1, 3, missing -> all differ -> 1
    assert intra_list_diversity(recs, cats, k=3) == pytest.approx((2 / 3 + 1) / 2)


def test_intra_list_diversity_vectors_equals_brute_force():
    rng = np.random.default_rng(3)
    n_items, dim = 60, 8
    vectors = rng.normal(size=(n_items, dim))
    feats = pl.DataFrame({"item_id": np.arange(n_items), "emb": vectors.tolist()})
    rows = []
    for u in range(20):
        items = rng.choice(n_items, 7, replace=False)
        rows += [(u, int(i), 1.0, r + 1) for r, i in enumerate(items)]
    recs = pl.DataFrame(rows, schema=REC_SCHEMA, orient="row")
    got = intra_list_diversity(recs, feats, k=5, column="emb", per_user=True)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    for u, value in got.iter_rows():
        items = recs.filter((pl.col("user_id") == u) & (pl.col("rank") <= 5))["item_id"].to_numpy()
        sims = unit[items] @ unit[items].T
        pairs = [(a, b) for a in range(5) for b in range(a + 1, 5)]
        assert value == pytest.approx(np.mean([1 - sims[a, b] for a, b in pairs]), abs=1e-12)


# ---------------------------------------------------------------- cohorts


def test_cohorts_by_activity_and_cold_items():
    # user u has u history interactions on popular items 0..9 (u = 1..100)
    hist_users = np.repeat(np.arange(1, 101), np.arange(1, 101))
    history = pl.DataFrame({"user_id": hist_users, "item_id": hist_users % 10})
    # everyone wants item 0 (warm); users 1..5 also want item 500 (never seen: cold)
    truth = pl.DataFrame({"user_id": list(range(1, 101)) + [1, 2, 3, 4, 5], "item_id": [0] * 100 + [500] * 5})
    pop = item_popularity(history)
    members = cohorts(history, truth, pop)
    sizes = dict(members.group_by("cohort").len().rows())
    assert sizes == {"all": 100, "long_tail_users": 20, "heavy_users": 10, "cold_items": 5}
    assert set(members.filter(pl.col("cohort") == "heavy_users")["user_id"]) == set(range(91, 101))
    assert set(members.filter(pl.col("cohort") == "long_tail_users")["user_id"]) == set(range(1, 21))
    cold_truth = cohort_truth(truth, members, pop).filter(pl.col("cohort") == "cold_items")
    assert set(cold_truth["item_id"]) == {500}

    # recommend item 0 then item 500 to everyone: warm item at rank 1, cold at rank 2
    recs = pl.DataFrame(
        {"user_id": np.repeat(np.arange(1, 101), 2), "item_id": [0, 500] * 100, "score": [2.0, 1.0] * 100, "rank": [1, 2] * 100},
        schema=REC_SCHEMA,
    )
    out = evaluate_cohorts(recs, truth, members, pop, ks=(1, 2), metrics=("recall", "ndcg"))
    got = {(c, m, k): (v, n) for c, m, k, v, n in out.iter_rows()}
    # on cold items only the item at rank 2 counts: recall@1 = 0, recall@2 = 1, ndcg@2 = 1/log2(3)
    assert got[("cold_items", "recall", 1)] == (0.0, 5)
    assert got[("cold_items", "recall", 2)] == (1.0, 5)
    assert got[("cold_items", "ndcg", 2)][0] == pytest.approx(1 / np.log2(3))
    # heavy users want item 0 only: recall@1 = 1
    assert got[("heavy_users", "recall", 1)] == (1.0, 10)
    # long-tail users 1..5 also want item 500: recall@1 = 1/2 for them, 1 for users 6..20
    assert got[("long_tail_users", "recall", 1)][0] == pytest.approx((5 * 0.5 + 15) / 20)


# ---------------------------------------------------------------- statistics


def bernoulli_per_user(n_users: int, p: float, seed: int, metric: str = "hit_rate") -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "user_id": np.arange(n_users),
            "metric": [metric] * n_users,
            "k": np.full(n_users, 10, dtype=np.int32),
            "value": (rng.random(n_users) < p).astype(float),
        }
    )


def test_bootstrap_ci_contains_estimate_matches_normal_width_and_narrows():
    widths = {}
    for n in (250, 4000):
        ci = bootstrap_ci(bernoulli_per_user(n, 0.3, seed=n), n_boot=2000, seed=1).row(0, named=True)
        assert ci["ci_low"] < ci["value"] < ci["ci_high"]
        assert ci["n_users"] == n
        widths[n] = ci["ci_high"] - ci["ci_low"]
        # the bootstrap interval of a mean should agree with the normal approximation
        normal = 2 * 1.959964 * np.sqrt(ci["value"] * (1 - ci["value"]) / n)
        assert widths[n] == pytest.approx(normal, rel=0.15)
    # 16x the users -> about 1/4 of the width
    assert widths[4000] < 0.35 * widths[250]


def test_bootstrap_ci_keeps_key_columns_and_real_metrics():
    truth, recs = random_run(2)
    per_user = evaluate(recs, truth, ks=(10, 20), per_user=True).with_columns(pl.lit("all").alias("cohort"))
    ci = bootstrap_ci(per_user, n_boot=300)
    assert ci.columns == ["cohort", "metric", "k", "value", "ci_low", "ci_high", "n_users"]
    summary = evaluate(recs, truth, ks=(10, 20))
    joined = ci.join(summary, on=["metric", "k"], suffix="_plain")
    assert np.allclose(joined["value"], joined["value_plain"])
    assert (joined["ci_low"] <= joined["value"]).all() and (joined["value"] <= joined["ci_high"]).all()


def test_paired_test_detects_planted_gain_and_not_noise():
    base = bernoulli_per_user(800, 0.3, seed=7)
    rng = np.random.default_rng(8)
    # system a flips 10% of b's misses into hits: a real improvement on the same users
    better = base.with_columns(
        pl.when((pl.col("value") == 0) & pl.Series(rng.random(800) < 0.10)).then(1.0).otherwise(pl.col("value")).alias("value")
    )
    gain = paired_test(better, base, n_boot=1000).row(0, named=True)
    assert gain["mean_diff"] > 0 and gain["ci_low"] > 0 and gain["p_value"] < 1e-6
    expected_p = sps.ttest_rel(better["value"].to_numpy(), base["value"].to_numpy()).pvalue
    assert gain["p_value"] == pytest.approx(expected_p)
    wil = paired_test(better, base, test="wilcoxon").row(0, named=True)
    assert wil["p_value"] < 1e-6

    same = paired_test(base, base).row(0, named=True)
    assert same["mean_diff"] == 0 and same["p_value"] == 1.0
    # two independent draws of the same system: no significant difference
    other = bernoulli_per_user(800, 0.3, seed=9)
    noise = paired_test(other, base).row(0, named=True)
    assert noise["ci_low"] < 0 < noise["ci_high"] and noise["p_value"] > 0.05


def test_paired_test_requires_the_same_users():
    a = bernoulli_per_user(50, 0.3, seed=1)
    with pytest.raises(ValueError, match="one side only"):
        paired_test(a, a.filter(pl.col("user_id") < 40))


def test_holm_adjustment_by_hand():
    from recsys.metrics import holm

    # m = 4: sorted 0.01, 0.02, 0.03, 0.5 -> 4*0.01, max(.04, 3*0.02), max(.06, 2*0.03), max(.06, 1*0.5)
    got = holm([0.03, 0.5, 0.01, 0.02])
    assert np.allclose(got, [0.06, 0.5, 0.04, 0.06])
    assert np.allclose(holm([0.4, 0.6]), [0.8, 0.8])  # monotone: the larger p cannot get a smaller adjusted value
    assert np.allclose(holm([0.9, 0.9, 0.9]), [1.0, 1.0, 1.0])  # capped at 1
    assert holm([]).size == 0


def _statsmodels_holm(pvals):
    """statsmodels.stats.multitest.multipletests(pvals, method="holm")[1], written out (statsmodels 0.14):
    sort ascending, multiply by ntests, ntests-1, ..., 1, running maximum, clip at 1, back to input order."""
    pvals = np.asarray(pvals, dtype=float)
    sortind = np.argsort(pvals)
    pvals_sorted = np.take(pvals, sortind)
    ntests = len(pvals)
    pvals_corrected_raw = pvals_sorted * np.arange(ntests, 0, -1)
    pvals_corrected = np.maximum.accumulate(pvals_corrected_raw)
    pvals_corrected[pvals_corrected > 1] = 1
    out = np.empty_like(pvals_corrected)
    out[sortind] = pvals_corrected
    return out


def test_holm_matches_the_statsmodels_formula():
    from recsys.metrics import holm

    rng = np.random.default_rng(3)
    for m in (1, 2, 5, 12, 40):
        p = rng.uniform(0, 0.2, m) ** 2
        assert np.allclose(holm(p), _statsmodels_holm(p), atol=0, rtol=1e-12)
    ties = [0.01, 0.01, 0.04, 0.2, 0.01]  # tied p-values: the same adjusted value whatever their order
    assert np.allclose(holm(ties), _statsmodels_holm(ties)) and np.allclose(holm(ties), [0.05, 0.05, 0.08, 0.2, 0.05])
    # decided at 95%: only the comparisons whose adjusted p stays below 0.05 (0.03 alone would be, not after Holm)
    assert (holm([0.001, 0.012, 0.03, 0.3]) < 0.05).tolist() == [True, True, False, False]  # .004, .036, .06, .3
