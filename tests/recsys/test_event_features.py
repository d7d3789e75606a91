"""OutRank feature derivation and selection, and handing the selected features to the rankers."""

import polars as pl

from recsys.event_features import bucketize, select_features, with_selected_attributes


def _users():
    return pl.DataFrame(
        {
            "user_id": list(range(1, 101)),
            "age": [18 + (i * 7) % 60 for i in range(100)],
            "gender": ["M" if i % 3 else "F" for i in range(100)],
            "zip": [f"{(i * 37) % 10}{i:04d}" for i in range(100)],
        }
    )


def test_bucketize_gives_small_categoricals_and_keeps_label_and_raw_ids():
    frame = (
        _users().drop("user_id").with_columns(pl.Series("label", [i % 2 for i in range(100)]), pl.Series("user_id_raw", list(range(100))))
    )
    out = bucketize(frame)
    assert set(out.columns) == {"age_bucket", "gender", "zip_prefix", "label", "user_id_raw"}
    assert out["age_bucket"].n_unique() <= 10 and out["zip_prefix"].n_unique() <= 10
    assert out["user_id_raw"].n_unique() == 100 and out["label"].to_list() == frame["label"].to_list()


def test_rankers_get_the_feature_outrank_judged_not_the_raw_column():
    users, names = with_selected_attributes(_users(), "user_id", ["zip_prefix", "gender", "beh_recency"])
    assert names == ["zip_prefix", "gender"]  # beh_recency is an event feature, not a user attribute
    assert users["zip_prefix"].n_unique() <= 10 < users["zip"].n_unique()
    assert users["zip_prefix"].to_list() == [z[0] for z in users["zip"].to_list()]


def test_a_feature_in_both_selections_is_derived_once():
    # features.selected_features holds the MI and the 3MR list; a feature in both is one column
    users, names = with_selected_attributes(_users(), "user_id", ["zip_prefix", "gender", "zip_prefix"])
    assert names == ["zip_prefix", "gender"] and users.columns.count("zip_prefix") == 1


def test_select_features_keeps_above_noise_drops_leaks_ids_and_redundant_copies():
    ranking = pl.DataFrame(
        {
            "feature": ["a", "a_copy", "leaky", "user_id_raw", "b", "noise"],
            "rank": [1, 2, 3, 4, 5, 6],
            "above_noise": [True, True, True, True, True, False],
            "leakage": [False, False, True, False, False, False],
            "is_constant": [False] * 6,
        }
    )
    redundant = pl.DataFrame({"feature_a": ["a"], "feature_b": ["a_copy"], "redundancy": [0.99]})
    assert select_features(ranking, redundant) == ["a", "b"]
