"""The split asset's protocols, including `files:<dir>` with RecBole benchmark atomic files."""

import json
from datetime import timedelta
from types import SimpleNamespace

import polars as pl
import pytest

from assets.split import SplitConfig, make_split
from recsys.sources import SourceError

HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"


def _interactions(n_users=20, per_user=6):
    rows = [(u, 100 + (u * 7 + j) % 40, 4.0, 880_000_000 + u * 1000 + j * 60) for u in range(1, n_users + 1) for j in range(per_user)]
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "value", "sec"], orient="row")
    ts = pl.from_epoch(pl.col("sec"), time_unit="s").cast(pl.Datetime("us"))
    return frame.select(
        pl.col("user_id").cast(pl.Int64),
        pl.col("item_id").cast(pl.Int64),
        pl.lit("rate").alias("event_type"),
        pl.col("value").cast(pl.Float64),
        ts.alias("ts"),
        ts.dt.date().alias("event_date"),
        pl.lit(None, pl.Int64).alias("session_id"),
        pl.lit("test").alias("source"),
    )


def test_files_protocol_reads_the_given_split_exactly(tmp_path):
    parts = {"train": [(1, 10, 5, 881250949), (2, 11, 3, 881250950)], "valid": [(1, 12, 4, 891717742)], "test": [(2, 13, 1, 891717743)]}
    for name, rows in parts.items():
        lines = [HEADER] + ["\t".join(str(v) for v in row) for row in rows]
        (tmp_path / f"ml-tiny.{name}.inter").write_text("\n".join(lines) + "\n")
    split = make_split(f"files:{tmp_path}", _interactions(), SplitConfig())
    assert split.train.height == 2 and split.valid.height == 1 and split.test.height == 1
    assert split.test["item_id"].to_list() == [13] and split.params["protocol"] == "files"


def test_temporal_splits_at_the_cutoff_partition():
    frame = _interactions().with_columns(pl.col("ts") + pl.duration(days=pl.col("user_id")))  # user u acts on day u
    frame = frame.with_columns(pl.col("ts").dt.date().alias("event_date"))
    first = frame["event_date"].min()
    cutoff = (first + timedelta(days=10)).isoformat()
    split = make_split("temporal", frame, SplitConfig(window_days=3), cutoff)
    assert split.params["protocol"] == "temporal" and split.params["cutoff"] == cutoff and split.params["window_days"] == 3
    days = {
        name: sorted({(d - first).days for d in part["event_date"]})
        for name, part in (("train", split.train), ("valid", split.valid), ("test", split.test))
    }
    assert days == {"train": list(range(0, 7)), "valid": [7, 8, 9], "test": [10, 11, 12]}
    assert split.params["n_future_rows_excluded"] == frame.filter(pl.col("event_date") >= first + timedelta(days=13)).height
    with pytest.raises(ValueError, match="cut-off"):
        make_split("temporal", frame, SplitConfig())


@pytest.mark.parametrize("protocol", ["temporal_quantile", "leave_last_out"])
def test_other_protocols_keep_every_row(protocol):
    frame = _interactions()
    split = make_split(protocol, frame, SplitConfig())
    assert split.train.height + split.valid.height + split.test.height == frame.height
    assert split.params["protocol"] == protocol


def test_unknown_protocol_is_named_in_the_error():
    with pytest.raises(ValueError, match="bogus"):
        make_split("bogus", _interactions(), SplitConfig())


# ---------------------------------------------------------------- files protocol through the asset


def _write_split_folder(root, name="ml-tiny", bad_train_lines=(), catalogue=True):
    """users 1, 2 with history; user 9 appears only in the test file (no history)."""
    folder = root / name
    folder.mkdir(parents=True)
    t0 = 881_250_000
    rows = {
        "train": [(1, 10, 4, t0), (1, 11, 5, t0 + 5), (2, 10, 3, t0 + 5), (2, 12, 4, t0 + 9), (1, 13, 4, t0 + 9), (2, 13, 2, t0 + 12)],
        "valid": [(1, 12, 4, t0 + 9), (2, 14, 4, t0 + 15)],
        "test": [(1, 14, 5, t0 + 20), (2, 11, 4, t0 + 20), (9, 10, 4, t0 + 21), (9, 12, 3, t0 + 22)],
    }
    for fold, fold_rows in rows.items():
        lines = [HEADER] + ["\t".join(str(v) for v in row) for row in fold_rows] + (list(bad_train_lines) if fold == "train" else [])
        (folder / f"{name}.{fold}.inter").write_text("\n".join(lines) + "\n")
    if catalogue:
        (folder / f"{name}.item").write_text("item_id:token\tmovie_title:token_seq\n" + "".join(f"{i}\tT{i}\n" for i in range(10, 15)))
        (folder / f"{name}.user").write_text("user_id:token\tage:float\n" + "".join(f"{u}\t30\n" for u in (1, 2, 9)))
    return folder


def _materialize_split(tmp_path, protocol, catalogue_items=range(1, 100), catalogue_users=range(1, 100), engine=None, **config):
    import dagster as dg

    from assets.partitions import latest_cutoff
    from assets.split import split as split_asset
    from resources.engine import SqlEngine
    from resources.warehouse import Warehouse

    warehouse = Warehouse(data_dir=str(tmp_path / "data"))
    warehouse.write_table("raw.items", pl.DataFrame({"item_id": list(catalogue_items)}, schema={"item_id": pl.Int64}))
    warehouse.write_table("raw.users", pl.DataFrame({"user_id": list(catalogue_users)}, schema={"user_id": pl.Int64}))
    result = dg.materialize(
        [split_asset],
        partition_key=latest_cutoff(),
        resources={"warehouse": warehouse, "engine": engine or SqlEngine()},
        run_config={"ops": {"split": {"config": {"protocol": protocol, **config}}}},
    )
    return warehouse, result


def _split_metadata(result):
    (mat,) = [m for m in result.asset_materializations_for_node("split") if m.asset_key.to_user_string() == "split"]
    return {k: v.value for k, v in mat.metadata.items()}


def test_files_split_asset_quarantines_bad_lines_in_its_transaction(tmp_path):
    bad = ["1\t15\t4", "x\t10\t4\t881250000", "2\t10\t4\tsoon"]
    folder = _write_split_folder(tmp_path, bad_train_lines=bad)
    warehouse, result = _materialize_split(tmp_path, f"files:{folder}", max_quarantine_share=0.5)
    assert result.success
    q = warehouse.query('SELECT "partition", line_no, raw_line, reason, source FROM quality.quarantine ORDER BY line_no')
    assert q["partition"].to_list() == ["split:train"] * 3
    assert q["line_no"].to_list() == [8, 9, 10]
    assert q["raw_line"].to_list() == bad
    assert q["reason"].to_list() == ["column count 3, expected 4", "user_id 'x' is not an integer", "timestamp 'soon' is not a unix time"]
    assert q["source"].str.ends_with("ml-tiny.train.inter").all()
    meta = _split_metadata(result)
    assert (meta["n_read"], meta["n_loaded"], meta["n_quarantined"]) == (15, 12, 3)
    assert meta["loaded_plus_quarantined_equals_read"] is True and meta["dataset"] == "ml-tiny"
    loaded = warehouse.query("SELECT fold, seq FROM staging.split WHERE fold = 'train' ORDER BY seq")
    assert loaded["seq"].to_list() == [2, 3, 4, 5, 6, 7]  # the train file's line numbers
    params = json.loads(warehouse.query("SELECT CAST(params AS VARCHAR) AS p FROM staging.split_params")["p"][0])
    assert params["dataset"] == "ml-tiny" and params["files"]["train"] == {
        "file": "ml-tiny.train.inter",
        "n_read": 9,
        "n_loaded": 6,
        "n_quarantined": 3,
    }
    # a second materialization replaces the split's quarantine rows instead of adding to them
    _, again = _materialize_split(tmp_path, f"files:{folder}", max_quarantine_share=0.5)
    assert again.success and warehouse.query("SELECT count(*) AS n FROM quality.quarantine")["n"][0] == 3


def test_files_split_reaches_the_lake_under_spark_for_the_spark_stages_after_it(tmp_path):
    from resources.engine import SqlEngine
    from resources.lake import Lake

    folder = _write_split_folder(tmp_path)
    lake = str(tmp_path / "lake")
    warehouse, result = _materialize_split(tmp_path, f"files:{folder}", engine=SqlEngine(engine="spark", lake_dir=lake))
    assert result.success
    order = ["fold", "seq", "user_id", "item_id"]
    in_lake = pl.read_parquet(Lake(lake).table_files("staging.split"), hive_partitioning=True).sort(order)
    want = warehouse.table("staging.split").sort(order)
    assert in_lake.height == 12 and in_lake.select(want.columns).equals(want)
    # the default engine writes no lake
    _materialize_split(tmp_path / "duckdb", f"files:{folder}")
    assert not (tmp_path / "duckdb" / "lake").exists()


def test_files_split_asset_fails_over_the_bad_line_share_naming_the_file(tmp_path):
    folder = _write_split_folder(tmp_path, bad_train_lines=["1\t15\t4"])
    with pytest.raises(
        SourceError, match=r"1\.00% bad-line maximum: \S*ml-tiny\.train\.inter: 1 of 7 lines quarantined \(14\.29%\), e\.g\. line 8"
    ):
        _materialize_split(tmp_path, f"files:{folder}")


def test_files_split_asset_refuses_a_catalogue_that_does_not_match_the_folder(tmp_path):
    folder = _write_split_folder(tmp_path)
    with pytest.raises(SourceError) as err:
        _materialize_split(tmp_path, f"files:{folder}", catalogue_items=range(10, 13))
    text = str(err.value)
    assert str(folder) in text and "2 item_ids" in text and "item_id 13" in text and f"RECDAG_DATASET=movielens:{folder}" in text
    # without .item / .user of its own the folder is not checked against the warehouse catalogue
    plain = _write_split_folder(tmp_path / "plain", catalogue=False)
    _, result = _materialize_split(tmp_path / "plain", f"files:{plain}", catalogue_items=range(10, 13))
    assert result.success


def test_files_protocol_evaluates_users_without_history_with_the_popularity_fallback(tmp_path):
    from assets.common import dataset_label, fold_truth, load_candidates, load_split
    from recsys.metrics import cohorts, evaluate_cohorts, item_popularity

    folder = _write_split_folder(tmp_path)
    warehouse, result = _materialize_split(tmp_path, f"files:{folder}")
    assert result.success
    # a channel that, like every channel, only produced lists for warm users (1 and 2)
    recs = pl.DataFrame({"fold": ["test"] * 2, "user_id": [1, 2], "item_id": [14, 11], "score": [1.0, 1.0], "rank": [1, 1]})
    warehouse.write_table("candidates.pop", recs)

    data = load_split(warehouse)
    assert dataset_label(data, SimpleNamespace(name="movielens-100k")) == "ml-tiny"
    history, target, truth = fold_truth(data, "test")  # exactly the call assets/evaluation.py makes
    assert sorted(truth["user_id"].unique()) == [1, 2, 9]
    got = load_candidates(warehouse, "pop", "test")
    # user 9 (no history) gets the top items by train + valid popularity: 10, 12 and 13 have 2 events each, ties by id
    fallback = got.filter(pl.col("user_id") == 9)
    assert fallback["item_id"].to_list() == [10] and fallback["rank"].to_list() == [1]  # as long as the stage's lists (k = 1)
    assert got.filter(pl.col("user_id") == 1)["item_id"].to_list() == [14]
    pop = item_popularity(history)
    members = cohorts(history, truth, pop)
    assert members.filter(pl.col("cohort") == "no_history")["user_id"].to_list() == [9]
    out = evaluate_cohorts(got, truth, members, pop, ks=(1,), metrics=("hit_rate",))
    rows = {c: (v, n) for c, _m, _k, v, n in out.iter_rows()}
    assert rows["no_history"] == (1.0, 1) and rows["all"] == (1.0, 3)
    assert load_candidates(warehouse, "pop", "test", complete=False).height == 2
    # per user range (candidate_pool's blocks): the same rows as the whole frame filtered, fallbacks included
    # and as long as the stage's longest list over the whole fold, with the completion read once
    from assets.common import fold_completion, user_ranges

    longer = pl.concat([recs, pl.DataFrame({"fold": ["test"], "user_id": [1], "item_id": [12], "score": [0.5], "rank": [2]})])
    warehouse.write_table("candidates.pop", longer)
    whole = load_candidates(warehouse, "pop", "test")
    completion = fold_completion(warehouse, "test")
    assert sorted(completion[0].to_list()) == [1, 2, 9] and fold_completion(warehouse, "test", complete=False) is None
    assert user_ranges(pl.Series([9, 1, 2, 2]), 2) == [(1, 2), (9, 9)] and user_ranges(pl.Series([9, 1]), 0) == [(1, 9)]
    parts = [load_candidates(warehouse, "pop", "test", user_range=r, completion=completion) for r in user_ranges(completion[0], 1)]
    assert pl.concat(parts).equals(whole)
    assert whole.filter(pl.col("user_id") == 9)["rank"].to_list() == [1, 2]  # user 9's block alone has no list of 2


def test_temporal_protocol_still_evaluates_warm_users_only(tmp_path):
    from assets.common import load_candidates, load_split, warm_truth
    from resources.warehouse import Warehouse

    frame = _interactions(n_users=20, per_user=6)
    late = frame.filter(pl.col("user_id") == 1).with_columns(pl.lit(999, pl.Int64).alias("user_id"), pl.col("ts") + pl.duration(days=30))
    late = late.with_columns(pl.col("ts").dt.date().alias("event_date"))
    warehouse = Warehouse(data_dir=str(tmp_path / "data"))
    warehouse.write_table("staging.interactions", pl.concat([frame, late]).with_row_index("seq", offset=1))
    _, result = _materialize_split(tmp_path, "temporal_quantile")
    assert result.success
    data = load_split(warehouse)
    history, target = data.fold("test")
    assert 999 in target["user_id"].to_list() and 999 not in warm_truth(target, history)["user_id"].to_list()
    warehouse.write_table("candidates.pop", pl.DataFrame({"fold": ["test"], "user_id": [2], "item_id": [100], "score": [1.0], "rank": [1]}))
    assert load_candidates(warehouse, "pop", "test")["user_id"].to_list() == [2]
