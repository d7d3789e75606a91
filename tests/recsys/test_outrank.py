"""recsys.outrank on planted structure: ranking, noise controls, leakage, redundancy, 3MR."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from recsys.outrank import (
    add_control_features,
    encode_column,
    quality_report,
    rank_features,
    redundant_pairs,
)
from recsys.outrank.threemr import three_mr


def planted(rows: int = 8000, seed: int = 0) -> pl.DataFrame:
    """Label driven by `affinity` (strong) and `category` (weaker); the rest is noise or a leak."""
    rng = np.random.default_rng(seed)
    affinity = rng.integers(0, 10, rows)
    category = rng.integers(0, 6, rows)
    logit = np.linspace(-2.5, 2.0, 10)[affinity] + np.array([-0.8, -0.4, 0.0, 0.3, 0.6, 0.9])[category] - 0.5
    label = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return pl.DataFrame(
        {
            "label": label,
            "affinity": affinity,
            "category": [f"c{v}" for v in category],
            "noise": rng.integers(0, 8, rows),
            "high_card_noise": rng.integers(0, rows // 2, rows),
            "user_id": rng.permutation(rows),
            # a post-outcome field: "order amount" exists only when the label fired (1% glitches)
            "order_amount": np.where((label == 1) ^ (rng.random(rows) < 0.01), rng.integers(5, 9, rows), 0),
        }
    )


def test_informative_features_rank_above_every_control() -> None:
    ranking = rank_features(planted().drop("order_amount"), "label", controls=True, seed=1)
    above = set(ranking.filter("above_noise")["feature"])
    assert {"affinity", "category"} <= above
    best_control = ranking.filter("is_control")["score"].max()
    for name in ("affinity", "category"):
        assert ranking.filter(pl.col("feature") == name)["score"][0] > best_control
    assert ranking["rank"].to_list() == list(range(1, ranking.height + 1))
    assert ranking["score"].is_sorted(descending=True)


def test_cardinality_correction_demotes_high_cardinality_noise() -> None:
    frame = planted().drop("order_amount")
    plain = rank_features(frame, "label", heuristic="MI")["feature"].to_list()
    corrected = rank_features(frame, "label", heuristic="MI-randomized")
    # plain MI rewards sheer cardinality: the unique id and the 4000-value noise beat real signal
    assert plain[:2] == ["user_id", "high_card_noise"] or plain[:2] == ["high_card_noise", "user_id"]
    assert corrected["feature"].to_list()[:2] == ["affinity", "category"]
    noise_scores = corrected.filter(pl.col("feature").is_in(["user_id", "high_card_noise", "noise"]))["score"]
    assert noise_scores.abs().max() < 0.2 * corrected["score"][1]


def test_quality_report_flags_the_planted_leak_and_not_the_id() -> None:
    report = quality_report(planted(), "label")
    by_name = {row["feature"]: row for row in report.iter_rows(named=True)}
    assert [f for f, row in by_name.items() if row["leakage"]] == ["order_amount"]
    # the unique id determines the label too, but so does a shuffled copy of it: not a leak
    assert by_name["user_id"]["label_explained"] == pytest.approx(1.0)
    assert by_name["user_id"]["label_explained_noise"] == pytest.approx(1.0)
    assert by_name["user_id"]["is_id_like"] and not by_name["affinity"]["is_id_like"]
    assert by_name["order_amount"]["label_explained"] > 0.9


def test_quality_report_counts_on_a_hand_made_frame() -> None:
    frame = pl.DataFrame(
        {
            "label": [0, 1, 0, 1, 0, 1, 0, 1],
            "constant": ["a"] * 8,
            "sparse": [1, None, None, 2, 1, 1, None, 3],
            "rare": [7, 7, 7, 7, 7, 8, 8, 9],
        }
    )
    report = quality_report(frame, "label", rare_min_count=2).sort("feature")
    rows = {r["feature"]: r for r in report.iter_rows(named=True)}
    assert rows["constant"]["is_constant"] and rows["constant"]["cardinality"] == 1
    assert rows["sparse"]["coverage"] == pytest.approx(5 / 8)
    assert rows["sparse"]["cardinality"] == 4  # 1, 2, 3 and null
    assert rows["rare"]["rare_value_share"] == pytest.approx(1 / 8)  # only 9 occurs once
    assert rows["rare"]["top_value_share"] == pytest.approx(5 / 8)
    assert not rows["rare"]["is_constant"]


def test_redundant_pairs_finds_relabelled_copy_only() -> None:
    frame = planted().with_columns(affinity_copy=(pl.col("affinity") * 13 + 5).cast(pl.Utf8))
    pairs = redundant_pairs(frame.drop("label"), threshold=0.5)
    assert pairs.select("feature_a", "feature_b").rows() == [("affinity", "affinity_copy")]
    assert pairs["redundancy"][0] == pytest.approx(1.0)


def test_control_features_match_cardinality_and_are_deterministic() -> None:
    frame = pl.DataFrame({"a": [1, 2, 2, None, 5, 5, 5, 1], "b": ["x"] * 8})
    with_controls = add_control_features(frame, seed=3)
    assert with_controls.columns == ["a", "b", "control__a", "control__b"]
    assert with_controls["control__a"].n_unique() == 4  # three values + null
    assert with_controls["control__b"].n_unique() == 1
    assert with_controls.equals(add_control_features(frame, seed=3))
    assert not with_controls.equals(add_control_features(pl.concat([frame] * 50), seed=4).head(8))


def test_3mr_demotes_exact_duplicate_of_top_feature() -> None:
    frame = planted().drop("order_amount").with_columns(affinity_dup=pl.col("affinity").cast(pl.Utf8) + "_d")
    corrected = rank_features(frame, "label")["feature"].to_list()
    # plain relevance cannot tell the copy from the original: both sit on top
    assert set(corrected[:2]) == {"affinity", "affinity_dup"}
    ranking = rank_features(frame, "label", heuristic="3MR")
    order = ranking["feature"].to_list()
    assert order[0] in {"affinity", "affinity_dup"}
    duplicate = ({"affinity", "affinity_dup"} - {order[0]}).pop()
    assert order.index("category") < order.index(duplicate)
    assert set(ranking.columns) >= {"relevance", "redundancy", "relation", "cardinality", "coverage"}


def test_three_mr_greedy_on_hand_made_scores() -> None:
    # b duplicates a; c is weaker alone but unredundant and combines well with a
    relevance = np.array([1.0, 0.99, 0.5, 0.0])
    redundancy = np.array([[np.nan, 3.0, 0.0, 0.1], [3.0, np.nan, 0.0, 0.1], [0.0, 0.0, np.nan, 0.1], [0.1, 0.1, 0.1, np.nan]])
    relation = np.array([[np.nan, 1.0, 1.5, 1.0], [1.0, np.nan, 1.4, 1.0], [1.5, 1.4, np.nan, 0.5], [1.0, 1.0, 0.5, np.nan]])
    picked = three_mr(relevance, redundancy, relation, tie_order=np.arange(4))
    assert picked.order.tolist() == [0, 2, 1, 3]
    assert picked.objective[0] == pytest.approx(1.0)
    # second pick: relevance 0.5 − 0 + relation (1.5 − 0.5) / (1.5 − 0.5) = 1.5
    assert picked.objective[1] == pytest.approx(1.5)


def test_any_dtype_scores_like_its_integer_codes() -> None:
    rng = np.random.default_rng(4)
    codes = rng.integers(0, 5, 3000)
    label = (rng.random(3000) < 0.2 + 0.12 * codes).astype(np.int64)
    values = [None if c == 4 else c for c in codes.tolist()]
    day0 = dt.date(2024, 1, 1)
    frame = pl.DataFrame(
        {
            "label": label,
            "as_int": pl.Series(values, dtype=pl.Int64),
            "as_str": pl.Series([None if v is None else f"v{v}" for v in values]),
            "as_float": pl.Series([None if v is None else v / 3 for v in values]),
            "as_cat": pl.Series([None if v is None else f"v{v}" for v in values], dtype=pl.Categorical),
            "as_date": pl.Series([None if v is None else day0 + dt.timedelta(days=v) for v in values]),
            "as_list": pl.Series([None if v is None else [v, v] for v in values]),
        }
    )
    scores = rank_features(frame, "label")
    assert scores["score"].max() - scores["score"].min() < 1e-12
    assert scores["cardinality"].unique().to_list() == [5]
    assert scores["coverage"].unique().item() == pytest.approx(float(np.mean(codes != 4)))


def test_encoding_puts_null_in_its_own_code() -> None:
    encoded = encode_column(pl.Series([3, None, 3, 10**15, None]))
    assert encoded.cardinality == 3 and encoded.n_null == 2
    assert encoded.codes[1] == encoded.codes[4] == 2
    assert encoded.codes[0] == encoded.codes[2] != encoded.codes[3]


def test_rank_features_rejects_bad_input() -> None:
    frame = planted(rows=200)
    with pytest.raises(ValueError, match="unknown heuristic"):
        rank_features(frame, "label", heuristic="chi2")
    with pytest.raises(ValueError, match="not in the frame"):
        rank_features(frame, "target")
    with pytest.raises(ValueError, match="not in the frame"):
        rank_features(frame, "label", features=["affinity", "missing"])
    assert rank_features(frame, "label", heuristic="MI-numba-randomized")["heuristic"][0] == "MI-randomized"
