"""The `files` protocol's parts in recsys: a RecBole benchmark folder with malformed lines, its
quarantine and counts, the dataset label, the catalogue check, the popularity fallback and the
no_history cohort."""

import polars as pl
import pytest

from recsys.metrics import cohorts, complete_with_popularity, evaluate_cohorts, item_popularity, popular_items, popularity_fallback
from recsys.sources import SourceError
from recsys.sources.recbole import open_benchmark_split, read_benchmark_split
from recsys.split import files_split

HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"
T0 = 881_250_000


def _row(u, i, r=4, t=0):
    return f"{u}\t{i}\t{r}\t{T0 + t}"


def write_folder(root, name="ml-tiny", bad=True, catalogue=False):
    """train: users 1, 2 on items 10..13; valid: user 1; test: user 1, user 2, and user 9 (no history)."""
    folder = root / name
    folder.mkdir(parents=True)
    train = [_row(1, 10), _row(1, 11, t=5), _row(2, 10, t=5), _row(2, 12, t=9), _row(1, 13, t=9)]
    if bad:
        train += ["3\t10\t4", "x\t10\t4\t881250000", _row(3, 11, t=1).replace(str(T0 + 1), "yesterday")]
    valid = [_row(1, 12, t=9)] + (["", "4\t-5\t3\t881250000"] if bad else [])
    test = [_row(1, 14, t=20), _row(2, 11, t=20), _row(9, 10, t=21)]
    for fold, lines in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"{name}.{fold}.inter").write_text("\n".join([HEADER, *lines]) + "\n")
    if catalogue:
        (folder / f"{name}.item").write_text("item_id:token\tmovie_title:token_seq\n" + "".join(f"{i}\tT{i}\n" for i in range(10, 16)))
        (folder / f"{name}.user").write_text("user_id:token\tage:float\n" + "".join(f"{u}\t30\n" for u in (1, 2, 3, 4, 9)))
    return folder


def test_malformed_split_lines_are_quarantined_with_line_and_reason(tmp_path):
    bench = open_benchmark_split(write_folder(tmp_path))
    q = bench.quarantine()
    got = {(p, n): r for p, n, r in q.select("partition", "line_no", "reason").iter_rows()}
    assert got == {
        ("split:train", 7): "column count 3, expected 4",
        ("split:train", 8): "user_id 'x' is not an integer",
        ("split:train", 9): "timestamp 'yesterday' is not a unix time",
        ("split:valid", 3): "empty line",
        ("split:valid", 4): "item_id -5 is negative",
    }
    assert q.filter(pl.col("line_no") == 8)["raw_line"][0] == "x\t10\t4\t881250000"
    assert q["source"].str.ends_with("ml-tiny.train.inter").sum() == 3
    counts = {r["fold"]: r for r in bench.file_counts().iter_rows(named=True)}
    assert [(counts[f]["n_read"], counts[f]["n_loaded"], counts[f]["n_quarantined"]) for f in ("train", "valid", "test")] == [
        (8, 5, 3),
        (3, 1, 2),
        (3, 3, 0),
    ]
    assert all(c["n_read"] == c["n_loaded"] + c["n_quarantined"] for c in counts.values())
    assert bench.label == "ml-tiny" and bench.item_file is None and bench.user_file is None


def test_seq_is_the_line_number_in_train_then_valid_then_test(tmp_path):
    parts = read_benchmark_split(write_folder(tmp_path))
    train_seq = parts["train"].interactions.sort("seq")["seq"].to_list()
    assert train_seq == [2, 3, 4, 5, 6]  # the train file's own line numbers
    # the train file has 9 lines: valid line 2 follows as 11, test lines 2..4 follow valid's 4 lines as 15..17
    assert parts["valid"].interactions["seq"].to_list() == [9 + 2]
    assert sorted(parts["test"].interactions["seq"].to_list()) == [13 + 2, 13 + 3, 13 + 4]
    # user 1's train item 13 and valid item 12 share a timestamp: (ts, seq) puts the valid one last
    history = pl.concat([parts["train"].interactions, parts["valid"].interactions])
    last = history.filter(pl.col("user_id") == 1).sort("ts", "seq")["item_id"][-1]
    assert last == 12


def test_too_many_bad_lines_fail_naming_the_file(tmp_path):
    bench = open_benchmark_split(write_folder(tmp_path))
    with pytest.raises(SourceError, match=r"ml-tiny\.train\.inter: 3 of 8 lines quarantined \(37\.50%\).*line 7: column count 3") as err:
        bench.check_bad_share(0.01)
    assert "ml-tiny.valid.inter: 2 of 3" in str(err.value) and "test.inter" not in str(err.value)
    bench.check_bad_share(0.7)  # under the threshold: nothing raised


def test_catalogue_check_names_folder_count_example_and_the_fix(tmp_path):
    folder = write_folder(tmp_path, bad=False, catalogue=True)
    bench = open_benchmark_split(folder)
    assert bench.item_file.name == "ml-tiny.item" and bench.user_file.name == "ml-tiny.user"
    assert set(bench.catalogue_ids()["item_id"]) == set(range(10, 16))
    bench.check_catalogue(pl.Series(range(0, 100)), pl.Series(range(0, 100)))  # a superset: fine
    with pytest.raises(SourceError) as err:
        bench.check_catalogue(pl.Series(range(0, 13)), pl.Series(range(0, 100)))
    text = str(err.value)
    assert str(folder) in text and "3 item_ids" in text and "item_id 13" in text and "raw.items" in text
    assert f"RECDAG_DATASET=movielens:{folder}" in text
    # without .item / .user the folder has no catalogue of its own: nothing to check against
    plain = open_benchmark_split(write_folder(tmp_path / "plain", bad=False))
    plain.check_catalogue(pl.Series([], dtype=pl.Int64), pl.Series([], dtype=pl.Int64))


def test_files_split_carries_the_dataset_label_and_extra_params(tmp_path):
    parts = read_benchmark_split(write_folder(tmp_path, bad=False))
    split = files_split(*(parts[f].interactions for f in ("train", "valid", "test")), source="x", dataset="ml-tiny", split_name="ml-tiny")
    assert split.params["dataset"] == "ml-tiny" and split.params["split_name"] == "ml-tiny"
    assert split.params["n_test_users_cold"] == 1  # user 9
    assert "dataset" not in files_split(*(parts[f].interactions for f in ("train", "valid", "test"))).params


def test_popularity_fallback_orders_by_count_then_id_and_leaves_out_seen_items():
    history = pl.DataFrame({"user_id": [1, 1, 2, 2, 3, 3, 4], "item_id": [10, 11, 10, 11, 10, 12, 13]})
    assert popular_items(history)["item_id"].to_list() == [10, 11, 12, 13]
    recs = popularity_fallback(pl.Series("user_id", [9, 1]), history, k=3)
    assert recs.filter(pl.col("user_id") == 9)["item_id"].to_list() == [10, 11, 12]  # no history: plain top-3
    assert recs.filter(pl.col("user_id") == 1)["item_id"].to_list() == [12, 13]  # only 2 unseen items exist
    assert recs.filter(pl.col("user_id") == 9)["rank"].to_list() == [1, 2, 3]
    assert recs.filter(pl.col("user_id") == 9)["score"].to_list() == [3.0, 2.0, 1.0]


def test_complete_with_popularity_fills_only_users_without_a_list():
    history = pl.DataFrame({"user_id": [1, 1, 2], "item_id": [10, 11, 10]})
    recs = pl.DataFrame({"user_id": [1, 1], "item_id": [12, 13], "score": [0.9, 0.8], "rank": [1, 2]})
    out = complete_with_popularity(recs, pl.Series("user_id", [1, 2, 9]), history)
    assert out.filter(pl.col("user_id") == 1)["item_id"].to_list() == [12, 13]  # the stage's own list, unchanged
    assert out.filter(pl.col("user_id") == 2)["item_id"].to_list() == [11]  # k = 2 (the longest list); 10 seen
    assert out.filter(pl.col("user_id") == 9)["item_id"].to_list() == [10, 11]
    assert out.schema["rank"] == pl.Int32
    assert complete_with_popularity(recs, pl.Series("user_id", [1]), history).equals(recs.with_columns(pl.col("rank").cast(pl.Int32)))


def test_users_without_history_form_the_no_history_cohort():
    # users 1..10 have u history events on items 0..4; user 99 has none
    history = pl.DataFrame(
        {"user_id": [u for u in range(1, 11) for _ in range(u)], "item_id": [j % 5 for u in range(1, 11) for j in range(u)]}
    )
    truth = pl.DataFrame({"user_id": [*range(1, 11), 99], "item_id": [7] * 10 + [0]})
    pop = item_popularity(history)
    members = cohorts(history, truth, pop)
    by = {c: set(g["user_id"]) for (c,), g in members.group_by("cohort")}
    assert by["no_history"] == {99} and 99 in by["all"]
    assert 99 not in by["long_tail_users"] and by["long_tail_users"] == {1, 2}  # quantiles over users with history
    recs = complete_with_popularity(
        pl.DataFrame({"user_id": list(range(1, 11)), "item_id": [7] * 10, "score": [1.0] * 10, "rank": [1] * 10}),
        truth["user_id"],
        history,
    )
    out = evaluate_cohorts(recs, truth, members, pop, ks=(1,), metrics=("hit_rate",))
    got = {c: (v, n) for c, _m, _k, v, n in out.iter_rows()}
    assert got["no_history"] == (1.0, 1)  # the fallback's top item (0) is user 99's test item
    assert got["all"] == (1.0, 11)
