"""StagedTables: block-by-block writes that replace the published tables only once complete (candidate_pool,
ranker_dataset)."""

import polars as pl
import pytest

from assets.common import StagedTables
from resources.warehouse import Warehouse


def test_blocks_are_published_together_and_a_failed_build_keeps_the_previous_tables(tmp_path):
    wh = Warehouse(data_dir=str(tmp_path))
    wh.write_table("candidates.pool", pl.DataFrame({"user_id": [0], "item_id": [0]}))
    staged = StagedTables(wh)
    staged.add("candidates.pool", pl.DataFrame({"user_id": [1, 1], "item_id": [5, 6]}))
    staged.add("candidates.pool_ranked", pl.DataFrame({"user_id": [1], "rank": [1]}))
    staged.add("candidates.pool", pl.DataFrame({"user_id": [2], "item_id": [7]}))
    assert wh.table("candidates.pool")["user_id"].to_list() == [0]  # nothing published yet
    with pytest.raises(ValueError, match=r"candidates\.pool: a block's columns differ"):
        staged.add("candidates.pool", pl.DataFrame({"user_id": [3], "score": [1.0]}))
    staged.publish()
    assert wh.table("candidates.pool").sort("user_id", "item_id").rows() == [(1, 5), (1, 6), (2, 7)]
    assert wh.table("candidates.pool_ranked").rows() == [(1, 1)]
    assert wh.query("SELECT count(*) AS n FROM information_schema.tables WHERE table_name LIKE '\\_building\\_%' ESCAPE '\\'")["n"][0] == 0
