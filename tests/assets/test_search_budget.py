"""The channel search's event budget (ChannelConfig.max_search_events): past it, every setting of the grid is
fitted on a seeded sample of whole users' train histories, and the chosen setting is refit on the whole train
history for the valid candidates, so what is served never comes from the sample."""

import dagster as dg
import polars as pl
from dagster_support import ingest_every_day, local_resources

from assets.common import fold_users, load_catalogue, load_split
from assets.partitions import latest_cutoff
from orchestration.definitions import all_assets, all_checks
from recsys.channels.itemcf import ItemCFChannel

BUDGET = 12_000


def test_search_past_its_event_budget_fits_on_a_sample_and_serves_the_full_fit(tmp_path):
    resources = local_resources(tmp_path, "synthetic:30000")
    instance = dg.DagsterInstance.ephemeral()
    ingest_every_day(resources, instance)
    result = dg.materialize(
        [*all_assets, *all_checks],
        selection=["split", "candidates_itemcf"],
        partition_key=latest_cutoff(),
        resources=resources,
        instance=instance,
        run_config={"ops": {"candidates_itemcf": {"config": {"max_search_events": BUDGET, "max_search_users": 50}}}},
    )
    assert result.success
    [mat] = [m for m in result.asset_materializations_for_node("candidates_itemcf") if m.asset_key == dg.AssetKey("candidates_itemcf")]
    meta = {k: v.value for k, v in mat.metadata.items()}
    warehouse = resources["warehouse"]
    history, target = load_split(warehouse).fold("valid")
    assert history.height > BUDGET
    said = meta["search_history"]
    assert said.endswith("seed 0)") and f" of {history.height:,} train events" in said
    assert int(said.split(" of ")[0].replace(",", "")) <= BUDGET

    # the valid candidates are the chosen setting refit on the whole train history
    chosen = meta["chosen_params"]
    users = fold_users("valid", target, history)
    items = load_catalogue(warehouse, history)
    refit = ItemCFChannel(**{"depth": 30, "method": "cooc", **chosen}).fit(history, items=items).recommend(users, k=200, exclude_seen=True)
    written = warehouse.query("SELECT user_id, item_id, score, rank FROM candidates.itemcf WHERE fold = 'valid'")
    key = ["user_id", "rank"]
    assert written.sort(key).equals(refit.select(written.columns).sort(key))
    assert written.select(pl.col("user_id").n_unique()).item() > 0
