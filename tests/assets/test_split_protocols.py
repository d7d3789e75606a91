"""The split asset's protocols, including `files:<dir>` with RecBole benchmark atomic files."""

import polars as pl
import pytest

from assets.split import SplitConfig, make_split

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


@pytest.mark.parametrize("protocol", ["temporal", "leave_last_out"])
def test_other_protocols_keep_every_row(protocol):
    frame = _interactions()
    split = make_split(protocol, frame, SplitConfig())
    assert split.train.height + split.valid.height + split.test.height == frame.height
    assert split.params["protocol"] == protocol


def test_unknown_protocol_is_named_in_the_error():
    with pytest.raises(ValueError, match="bogus"):
        make_split("bogus", _interactions(), SplitConfig())
