"""The valid-fold hyper-parameter search of the channels (recsys/channels/search.py).

Planted taste data (tests/recsys/test_channels.py): every user's last event is the valid target.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from test_channels import RUNTIME, chain_data, taste_data

from recsys.channels import ease as ease_module
from recsys.channels.als import ALSChannel
from recsys.channels.ease import EASEChannel
from recsys.channels.itemcf import ItemCFChannel
from recsys.channels.search import expand_grid, pick_best, run_search, search_history, search_on_valid, valid_ndcg


@pytest.fixture(scope="module")
def taste():
    history, held_out, items = taste_data(n_users=300)
    return history, held_out, items, held_out["user_id"].unique().sort()


def test_expand_grid_is_the_product_in_grid_order():
    assert expand_grid({"a": [1, 2], "b": ["x", "y"]}) == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
        {"a": 2, "b": "x"},
        {"a": 2, "b": "y"},
    ]
    with pytest.raises(ValueError, match="'b' is empty"):
        expand_grid({"a": [1], "b": []})


def test_search_returns_the_setting_with_the_best_valid_ndcg(taste):
    history, target, items, users = taste
    grid = {"factors": [1, 16], "regularization": [0.05, 5000.0]}
    make = lambda p: ALSChannel(iterations=8, **p)  # noqa: E731
    best, table = search_on_valid(make, grid, history, target, users, k=10, items=items, runtime=RUNTIME)
    # every setting scored by a fresh fit, independently of the search
    direct = [valid_ndcg(make(s).fit(history, items, RUNTIME).recommend(users, k=10), target, users, 10) for s in expand_grid(grid)]
    np.testing.assert_allclose(table["valid_ndcg@10"].to_numpy(), direct, rtol=1e-9)
    assert best == expand_grid(grid)[int(np.argmax(direct))]
    assert table.filter(pl.col("chosen")).select("factors", "regularization").row(0, named=True) == best
    # planted single-category tastes: 16 factors with light regularization beat a rank-1 model
    assert best == {"factors": 16, "regularization": 0.05}
    assert max(direct) > 2 * direct[0]


class Spy:
    """A channel that records what it is fitted on and asked for; quality q = share of users served their target."""

    name = "spy"
    log: list = []

    def __init__(self, q: float, target: pl.DataFrame):
        self.q, self.target = q, target

    def fit(self, history, items=None, runtime=None):
        Spy.log.append(("fit", self.q, history))
        return self

    def recommend(self, user_ids, k, exclude_seen=True):
        users = pl.Series(user_ids, dtype=pl.Int64)
        Spy.log.append(("recommend", self.q, users))
        hit = (
            self.target.filter(pl.col("user_id").is_in(users.to_list()))
            .sort("user_id")
            .unique("user_id", keep="first", maintain_order=True)
        )
        hit = hit.head(round(self.q * hit.height))
        return hit.select("user_id", "item_id", pl.lit(1.0).alias("score"), pl.lit(1, pl.Int32).alias("rank"))


def test_search_reads_only_the_valid_data_it_is_given(taste):
    history, target, _, users = taste
    # the caller's test fold: nothing of it may reach a fit or a recommend
    test_users = pl.Series("user_id", [-1, -2], dtype=pl.Int64)
    Spy.log = []
    best, table = search_on_valid(lambda p: Spy(p["q"], target), {"q": [0.2, 0.6, 0.4]}, history, target, users, k=10)
    assert best == {"q": 0.6}
    fits = [entry for entry in Spy.log if entry[0] == "fit"]
    asked = [entry for entry in Spy.log if entry[0] == "recommend"]
    assert [q for _, q, _ in fits] == [0.2, 0.6, 0.4]
    assert all(frame is history for _, _, frame in fits)  # fitted on the valid fold's history only
    assert all(s.sort().equals(users.sort()) for _, _, s in asked)  # scored on the valid fold's users only
    assert not any(s.is_in(test_users.to_list()).any() for _, _, s in asked)
    assert table["valid_ndcg@10"].to_list() == pytest.approx([0.2, 0.6, 0.4], abs=0.01)


def test_ties_go_to_the_first_setting_in_the_grid(taste):
    history, target, _, users = taste
    make = lambda p: Spy(p["q"], target)  # noqa: E731
    best, table = search_on_valid(make, {"q": [0.3, 0.7, 0.7, 0.1]}, history, target, users)
    assert best == {"q": 0.7} and table["chosen"].to_list() == [False, True, False, False]
    # noise columns: the chosen setting and its twin differ by exactly nothing; the others by some standard errors
    assert table["paired_se_vs_chosen"].to_list()[1:3] == [0.0, 0.0]
    assert (table["se"] > 0).all() and table["paired_se_vs_chosen"][0] > 0
    # the same two scores, as two names of one setting: the first listed wins either way round
    for order in (["a", "b"], ["b", "a"]):
        best, _ = search_on_valid(lambda p: Spy(0.5, target), {"name": order}, history, target, users)
        assert best == {"name": order[0]}
    assert pick_best([0.1, float("nan"), 0.1]) == 0 and pick_best([float("nan"), 0.2]) == 1


def test_a_grid_of_one_value_is_no_search(taste):
    history, target, _, users = taste
    Spy.log = []
    result = run_search(lambda p: Spy(p["q"], target), {"q": [0.5]}, history, target, users)
    assert not result.searched and result.best_params == {"q": 0.5} and result.table.is_empty()
    assert Spy.log == []  # nothing fitted


def test_ease_gram_reuse_equals_a_fresh_fit_per_lambda(taste, monkeypatch):
    history, target, items, users = taste
    grams = []
    real = ease_module.gram_matrix
    monkeypatch.setattr(ease_module, "gram_matrix", lambda X, dtype=np.float64: grams.append(1) or real(X, dtype))
    lambdas = [5.0, 50.0, 500.0]
    make = lambda p: EASEChannel(**p)  # noqa: E731
    shared = list(make({"l2": lambdas[0]}).fit_settings(make, [{"l2": lam} for lam in lambdas], history))
    assert len(grams) == 1  # one Gram matrix for every λ
    for (setting, channel), lam in zip(shared, lambdas):
        fresh = EASEChannel(l2=lam).fit(history)
        assert setting == {"l2": lam} and channel.l2 == lam
        np.testing.assert_allclose(channel.B_, fresh.B_, rtol=1e-12, atol=1e-14)
        assert channel.recommend(users, k=20).equals(fresh.recommend(users, k=20))
    # the search uses the shared path, and its scores are those of fresh fits
    grams.clear()
    result = run_search(make, {"l2": lambdas}, history, target, users, items=items)
    assert len(grams) == 1
    direct = [valid_ndcg(EASEChannel(l2=lam).fit(history).recommend(users, k=10), target, users) for lam in lambdas]
    np.testing.assert_allclose(result.table["valid_ndcg@10"].to_numpy(), direct, rtol=1e-9)
    assert result.best_channel.l2 == result.best_params["l2"]
    assert result.best_channel.recommend(users, k=10).equals(EASEChannel(**result.best_params).fit(history).recommend(users, k=10))


def test_itemcf_trigger_settings_share_one_index():
    history, _ = chain_data(n_users=120)
    make = lambda p: ItemCFChannel(depth=20, method="cooc", **p)  # noqa: E731
    settings = [{"n_triggers": n} for n in (1, 3, 10)]
    fitted = list(make(settings[0]).fit_settings(make, settings, history))
    assert fitted[0][1].index_ is fitted[1][1].index_ is fitted[2][1].index_
    users = history["user_id"].unique().sort().head(40)
    for setting, channel in fitted:
        assert channel.recommend(users, k=10).equals(make(setting).fit(history).recommend(users, k=10))


def test_asset_configs_name_their_grids():
    from assets.candidates import ALSConfig, ChannelConfig, EaseConfig, ItemCFConfig, config_grid

    assert config_grid(EaseConfig()) == {"l2": [50.0, 250.0, 500.0, 1000.0]}
    assert config_grid(ALSConfig()) == {"factors": [32, 64, 128], "regularization": [0.01, 0.05, 0.2]}
    assert config_grid(ItemCFConfig(n_triggers_grid=[3])) == {"n_triggers": [3]}  # one value: no search
    assert config_grid(ALSConfig(params={"factors": 16})) == {"regularization": [0.01, 0.05, 0.2]}  # fixed in params
    assert config_grid(ChannelConfig()) == {}


def test_search_history_within_the_budget_is_the_history_itself(taste):
    history, _, _, users = taste
    for budget in (0, history.height):
        fit_on, info = search_history(history, users.head(10), budget)
        assert fit_on is history and not info.sampled
        assert info.describe() == f"all {history.height:,} train events"


def test_search_history_past_the_budget_keeps_the_scored_users_and_whole_users(taste):
    history, _, _, users = taste
    scored = users.head(20)
    budget = history.height // 3
    fit_on, info = search_history(history, scored, budget, seed=0)
    assert info.sampled and info.n_events == fit_on.height <= budget
    counts = history.group_by("user_id").agg(pl.len().alias("n"))
    kept = fit_on.group_by("user_id").agg(pl.len().alias("n"))
    # whole users only, every scored user among them, rows in the history's order
    assert kept.join(counts, on="user_id", suffix="_all").filter(pl.col("n") != pl.col("n_all")).is_empty()
    assert scored.is_in(kept["user_id"].implode()).all()
    assert fit_on.equals(history.filter(pl.col("user_id").is_in(kept["user_id"].implode())))
    # the next user in the seeded order would have broken the budget (a prefix of the order, not a knapsack)
    assert budget - fit_on.height < counts["n"].max()
    assert info.describe().startswith(f"{fit_on.height:,} of {history.height:,} train events")
    # seeded: the same sample every call; another seed, other users
    assert search_history(history, scored, budget, seed=0)[0].equals(fit_on)
    assert not search_history(history, scored, budget, seed=1)[0].equals(fit_on)
    # relabelled ids (same event order): the same users by position
    shifted = history.with_columns(pl.col("user_id") + 1_000_000)
    again, _ = search_history(shifted, scored + 1_000_000, budget, seed=0)
    assert again.with_columns(pl.col("user_id") - 1_000_000).equals(fit_on)


def test_a_search_fitted_on_a_sample_still_finds_the_planted_setting(taste):
    history, target, items, users = taste
    fit_on, info = search_history(history, users.head(100), history.height // 2)
    assert info.sampled
    grid = {"factors": [1, 16], "regularization": [0.05, 5000.0]}
    best, _ = search_on_valid(lambda p: ALSChannel(iterations=8, **p), grid, fit_on, target, users.head(100), items=items, runtime=RUNTIME)
    assert best == {"factors": 16, "regularization": 0.05}
