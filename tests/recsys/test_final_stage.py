"""The final-stage guard (recsys/final_stage.py): the blend, the table on held-out users, the choice."""

import polars as pl
import pytest

from recsys.final_stage import blend, choose_final, guard_table


def _recs(rows: dict[int, list[int]]) -> pl.DataFrame:
    out = [(u, item, float(len(items) - r), r + 1) for u, items in rows.items() for r, item in enumerate(items)]
    return pl.DataFrame(out, schema={"user_id": pl.Int64, "item_id": pl.Int64, "score": pl.Float64, "rank": pl.Int32}, orient="row")


TRUTH = pl.DataFrame({"user_id": [1, 2, 3, 4], "item_id": [10, 20, 30, 40]})
USERS = pl.Series("user_id", [1, 2, 3, 4])


def test_blend_fuses_ranks_and_breaks_ties_by_the_first_list():
    a = _recs({1: [10, 11, 12]})
    b = _recs({1: [11, 10, 13]})
    fused = blend({"a": a, "b": b}, k=3)
    assert fused["item_id"].to_list() == [10, 11, 12]  # 10 and 11 tie on RRF: a's order decides
    assert fused["rank"].to_list() == [1, 2, 3]
    with pytest.raises(ValueError):
        blend({}, k=3)


def test_the_best_candidate_on_held_out_users_wins_even_a_channel():
    lists = {
        "lgbm_ranker": _recs({1: [10], 2: [99], 3: [99], 4: [99]}),  # 1 hit of 4
        "pool": _recs({1: [10], 2: [20], 3: [99], 4: [99]}),  # 2 hits
        "ease": _recs({1: [10], 2: [20], 3: [30], 4: [99]}),  # 3 hits: the best input
        "pop": _recs({1: [99], 2: [99], 3: [99], 4: [99]}),
    }
    kinds = {"lgbm_ranker": "ranker", "pool": "pool", "ease": "channel", "pop": "channel"}
    table = guard_table(lists, kinds, TRUTH, USERS, n_boot=200)
    assert table["stage"].to_list()[0] == "ease"
    choice = choose_final(table)
    assert choice["stage"] == "ease" and choice["kind"] == "channel" and choice["best_channel"] == "ease"
    assert choice["ndcg"] == pytest.approx(0.75) and choice["margin"] == pytest.approx(0.0)
    ranker = table.filter(pl.col("stage") == "lgbm_ranker").row(0, named=True)
    assert ranker["margin_vs_best_channel"] == pytest.approx(-0.5)
    assert ranker["margin_low"] <= -0.5 <= ranker["margin_high"]


def test_only_held_out_users_count_and_ties_go_to_the_simpler_candidate():
    lists = {
        "lgbm_ranker": _recs({1: [10], 2: [20], 5: [50]}),
        "swing": _recs({1: [10], 2: [20], 5: [77]}),
    }
    truth = pl.concat([TRUTH, pl.DataFrame({"user_id": [5], "item_id": [50]})])
    table = guard_table(lists, {"lgbm_ranker": "ranker", "swing": "channel"}, truth, pl.Series([1, 2]), n_boot=100)
    assert table["ndcg"].to_list() == [1.0, 1.0]  # user 5 (not held out) does not count
    assert choose_final(table)["stage"] == "swing"  # an exact tie: the channel, the simpler list
    assert table["n_users"].to_list() == [2, 2]
    with pytest.raises(ValueError, match="unknown candidate kinds"):
        guard_table(lists, {"lgbm_ranker": "model", "swing": "channel"}, truth, pl.Series([1]))


def test_the_rankers_blended_with_the_best_channel_are_a_candidate_built_alike_on_test():
    from recsys.final_stage import channel_blend, with_channel_blend

    # the ranker finds users 1-2's items at rank 1, the channel users 3-4's: only their fusion finds all four in 2
    lists = {
        "lgbm_ranker": _recs({1: [10, 98], 2: [20, 98], 3: [97, 30], 4: [97, 96]}),
        "ease": _recs({1: [99, 10], 2: [99, 95], 3: [30, 99], 4: [40, 99]}),
        "pop": _recs({1: [99], 2: [99], 3: [99], 4: [99]}),
    }
    kinds = {"lgbm_ranker": "ranker", "ease": "channel", "pop": "channel"}
    name = channel_blend(lists, kinds, TRUTH, USERS, k=2, guard_k=2)
    assert name == "blend+ease" and kinds[name] == "blend"
    assert lists[name].filter(pl.col("user_id") == 1)["item_id"].to_list() == [10, 99]  # RRF: 10 in both lists, then the channel's first
    table = guard_table(lists, kinds, TRUTH, USERS, k=2, n_boot=100)
    assert table.filter(pl.col("stage") == name)["ndcg"][0] > max(table.filter(pl.col("stage") != name)["ndcg"])
    # the same fusion of the test fold's lists, from the name alone
    test = {n: recs.clone() for n, recs in lists.items() if n != name}
    test_kinds = {n: kinds[n] for n in test}
    with_channel_blend(test, test_kinds, name, k=2)
    assert test[name].equals(lists[name])
    # no ranker: nothing to blend
    assert channel_blend({"ease": lists["ease"]}, {"ease": "channel"}, TRUTH, USERS, k=2) is None


def test_the_default_stays_unless_the_best_is_ahead_by_more_than_one_standard_error():
    from recsys.final_stage import describe_choice

    blend_list = _recs({1: [10], 2: [20], 3: [99], 4: [99]})  # 2 hits of 4
    kinds = {"blend": "blend", "ease": "channel"}
    # one more hit: per-user differences [0, 0, 1, 0], mean 0.25 = exactly one standard error (0.5 / 2): not enough
    lists = {"blend": blend_list, "ease": _recs({1: [10], 2: [20], 3: [30], 4: [99]})}
    table = guard_table(lists, kinds, TRUTH, USERS, n_boot=100, default="blend")
    assert table["stage"].to_list()[0] == "ease"  # the best on valid ...
    ease = table.filter(pl.col("stage") == "ease").row(0, named=True)
    assert ease["margin_vs_default"] == pytest.approx(0.25) and ease["se_vs_default"] == pytest.approx(0.25)
    choice = choose_final(table)
    assert choice["stage"] == "blend" and choice["default"] == "blend"  # ... but the default is served
    assert "not more than 1 SE" in describe_choice(table, choice)
    assert choose_final(table, margin_se=0.0)["stage"] == "ease"  # plain argmax
    # two more hits: differences [0, 0, 1, 1], mean 0.5 > one standard error (0.289): the best replaces the default
    lists["ease"] = _recs({1: [10], 2: [20], 3: [30], 4: [40]})
    table = guard_table(lists, kinds, TRUTH, USERS, n_boot=100, default="blend")
    choice = choose_final(table)
    assert choice["stage"] == "ease" and choice["margin_vs_default"] == pytest.approx(0.5)
    assert describe_choice(table, choice).startswith("ahead of the default blend by +0.5000")
    # without a default (no ranker passed): the best; a default that is not a candidate is an error
    assert choose_final(guard_table(lists, kinds, TRUTH, USERS, n_boot=100))["stage"] == "ease"
    with pytest.raises(ValueError, match="default candidate 'lgbm_ranker'"):
        guard_table(lists, kinds, TRUTH, USERS, default="lgbm_ranker")
