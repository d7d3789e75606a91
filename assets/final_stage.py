"""final_stage: the guard between the rankers and what is served (recsys/final_stage.py).

On the rankers' held-out valid users it scores every candidate for the final list: each ranker
whose promotion gate passed, their blend, their blend with the best channel on those users, the
fused pool and every channel, and keeps the best, so
the served list is never worse on valid than its best input. ``candidates.final`` holds the chosen
stage's lists (both folds: the held-out valid users' and the test fold's); ``models.final_stage``
logs every decision with the valid NDCG@10 of each candidate and the chosen one's paired margin over
the best channel. ``recommendations`` serves ``candidates.final``; ``evaluation`` reports it as the
stage ``final``. Past RECDAG_TRAIN_USERS valid users, only the seeded sample of them that every
valid-fold stage uses has lists and truth here (assets.common.fold_sample). Past RECDAG_EVAL_USERS
held-out users, the candidates are compared on a seeded uniform sample of them
(recsys.metrics.sampling), the same users for every candidate.
"""

import json

import dagster as dg
import polars as pl

from assets.catalog import results, table_spec
from assets.common import DUCKDB_POOL, every_target_user, fold_sample, fold_truth, load_candidates, load_split, with_fold
from assets.metadata import md, table_metadata
from assets.partitions import cutoff_partitions
from assets.rankers import RANKER_STAGES, current_rankers, split_key
from assets.retrieval import CHANNEL_STAGES
from recsys.final_stage import blend, channel_blend, choose_final, describe_choice, guard_table, ranked_users, with_channel_blend
from recsys.metrics.sampling import sample_users, users_in_event_order
from resources import settings
from resources.datasets import DatasetSource
from resources.model_store import ModelStore
from resources.warehouse import Warehouse, utcnow


class FinalStageConfig(dg.Config):
    k: int = 100  # list length kept in candidates.final
    n_boot: int = 1000
    seed: int = 0


def _lists(warehouse: Warehouse, fold: str, passed: list[str], k: int) -> tuple[dict[str, pl.DataFrame], dict[str, str]]:
    lists, kinds = {}, {}
    for name in passed:
        lists[name], kinds[name] = load_candidates(warehouse, name, fold, complete=False), "ranker"
    if len(passed) > 1:
        lists["blend"], kinds["blend"] = blend({n: lists[n] for n in passed}, k), "blend"
    lists["pool"], kinds["pool"] = load_candidates(warehouse, "pool_ranked", fold), "pool"
    for stage in CHANNEL_STAGES:
        if warehouse.table_exists(f"candidates.{stage}"):
            lists[stage], kinds[stage] = load_candidates(warehouse, stage, fold), "channel"
    return lists, kinds


def _chosen_list(warehouse: Warehouse, fold: str, chosen: str, kind: str, passed: list[str], k: int) -> pl.DataFrame:
    """The chosen candidate's list for ``fold``, built exactly as ``_lists`` (and ``with_channel_blend``) build
    it, reading only the lists it is made of (the test fold of every channel is never loaded for nothing)."""
    if kind == "blend":  # "blend" (the rankers) or "blend+<channel>"
        lists = {name: load_candidates(warehouse, name, fold, complete=False) for name in passed}
        if chosen == "blend":
            return blend(lists, k)
        kinds = dict.fromkeys(lists, "ranker")
        channel = chosen.removeprefix("blend+")
        lists[channel], kinds[channel] = load_candidates(warehouse, channel, fold), "channel"
        with_channel_blend(lists, kinds, chosen, k)
        return lists[chosen]
    if kind == "ranker":
        return load_candidates(warehouse, chosen, fold, complete=False)
    return load_candidates(warehouse, "pool_ranked" if kind == "pool" else chosen, fold)


@dg.multi_asset(
    specs=[
        table_spec(
            "final_stage",
            "candidates.final",
            "candidates.final: the list of the final stage chosen on held-out valid users among the passed rankers, their "
            "blend, their blend with the best channel, the pool and every channel (recsys/final_stage.py); never worse on "
            "valid than its best input.",
            deps=[*RANKER_STAGES, "candidates_pool_ranked"],
            kinds={"polars", "duckdb"},
        ),
        table_spec(
            "final_stage_log",
            "models.final_stage",
            "models.final_stage: every final-stage decision, with each candidate's valid NDCG@10 and the margin over the best channel.",
            deps=[*RANKER_STAGES, "candidates_pool_ranked"],
            kinds={"duckdb"},
        ),
    ],
    can_subset=True,
    pool=DUCKDB_POOL,
    group_name="rankers",
    partitions_def=cutoff_partitions,
)
def final_stage(
    context: dg.AssetExecutionContext, config: FinalStageConfig, warehouse: Warehouse, model_store: ModelStore, source: DatasetSource
):
    key = split_key(warehouse, source)
    current = current_rankers(context, warehouse, model_store, key)
    passed = [n for n in RANKER_STAGES if n in current and current[n]["gate_passed"]]
    data = load_split(warehouse)
    history, target, truth = fold_truth(data, "valid")
    # past RECDAG_TRAIN_USERS, the valid lists exist for the seeded sample of valid users only (assets.common.fold_sample)
    listed, listed_sample = fold_sample("valid", target, history, every_target_user(data.params))
    if listed_sample.sampled:
        truth = truth.join(listed.cast(pl.Int64).to_frame(), on="user_id", how="semi")
    valid, kinds = _lists(warehouse, "valid", passed, config.k)
    if passed:  # the users every passed ranker scored with a model blind to their labels (early-stopping slice, or all out of fold)
        users = ranked_users(valid, passed)
        if listed_sample.sampled:  # rankers trained on an older pool: only the users every channel has lists for
            users = users.filter(users.is_in(listed.cast(users.dtype).implode()))
    else:  # no ranker passed: the channels and the pool, whose settings were all searched on these valid users alike: all of them
        users = truth["user_id"].unique().sort()
    # past the budget, a seeded uniform sample of the held-out users with valid truth (the only ones scored),
    # drawn over their order of first valid-window event (relabelling-free); under it, the users as they are
    budget, sample = settings.eval_users(), None
    if users.len() > budget:
        order = users_in_event_order(target.with_columns(pl.col("user_id").cast(pl.Int64)))
        kept, sample = sample_users(order.filter(order.is_in(users.cast(pl.Int64).implode())), budget, config.seed)
        if sample.sampled:
            users = kept
            context.log.info(f"final stage: {sample.describe('held-out valid users')}")
    # the rankers fused with the best channel on these users (bench/results_ranker_cv.md: +2.2% over EASE on the
    # files split's valid CV, where either alone is within noise of EASE)
    channel_blend(valid, kinds, truth, users, config.k)
    # the cascade's own output is the default; another candidate replaces it only when ahead by more than one
    # standard error on these users (recsys/final_stage.py, bench/results_guard_rule.md)
    default = "blend" if len(passed) > 1 else (passed[0] if passed else None)
    table = guard_table(valid, kinds, truth, users, n_boot=config.n_boot, seed=config.seed, default=default)
    choice = choose_final(table)
    chosen = choice["stage"]
    test = _chosen_list(warehouse, "test", chosen, choice["kind"], passed, config.k)
    out = pl.concat([with_fold(valid[chosen], "valid"), with_fold(test, "test")], how="vertical").with_columns(
        pl.lit(chosen).alias("source_stage")
    )
    dataset, protocol, rule = key
    decision = pl.DataFrame(
        {
            "run_id": [context.run.run_id],
            "cutoff": [context.partition_key],
            "dataset": [dataset],
            "protocol": [protocol],
            "cutoff_rule": [rule],
            "stage": [chosen],
            "kind": [choice["kind"]],
            "rankers_passed": [",".join(f"{n}@{current[n]['version']}" for n in passed)],
            "valid_ndcg10": [choice["ndcg"]],
            "best_channel": [choice["best_channel"]],
            "best_channel_ndcg10": [choice["best_channel_ndcg"]],
            "margin": [choice["margin"]],
            "margin_low": [choice["margin_low"]],
            "margin_high": [choice["margin_high"]],
            "n_users": [choice["n_users"]],
            "candidates": [json.dumps(table.select("stage", "kind", "ndcg", "margin_vs_default", "se_vs_default").to_dicts())],
            "decided_at": [utcnow()],
        }
    )
    with warehouse.connect() as con:
        con.begin()
        warehouse.write_table("candidates.final", out, con=con)
        warehouse.append("models.final_stage", decision, con=con)
        con.commit()
    margin = "" if choice["margin"] is None else f" ({choice['margin']:+.4f} [{choice['margin_low']:+.4f}, {choice['margin_high']:+.4f}])"
    why = describe_choice(table, choice)
    context.log.info(
        f"final stage: {chosen} ({choice['kind']}), {why}; valid NDCG@10 {choice['ndcg']:.4f} on {choice['n_users']} held-out users; "
        f"best channel {choice['best_channel']} {choice['best_channel_ndcg'] or 0:.4f}{margin}"
    )
    final = dg.MaterializeResult(
        asset_key="final_stage",
        metadata={
            **table_metadata(warehouse, "candidates.final"),
            "chosen": chosen,
            "kind": choice["kind"],
            "why": why,
            "valid_ndcg10": choice["ndcg"],
            "best_channel": choice["best_channel"] or "",
            "margin_over_best_channel": choice["margin"] if choice["margin"] is not None else 0.0,
            "held_out_users": choice["n_users"],
            "user_sample": sample.describe("held-out valid users") if sample is not None and sample.sampled else "all held-out valid users",
            "valid_users": listed_sample.describe("valid users"),  # RECDAG_TRAIN_USERS: who has valid lists at all
            "rankers_passed": ", ".join(passed) or "none",
            "candidates_on_valid": md(table, 30),
        },
    )
    log = dg.MaterializeResult(asset_key="final_stage_log", metadata=table_metadata(warehouse, "models.final_stage"))
    yield from results(context, final, log)
