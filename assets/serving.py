"""recommendations: what is served, from final_stage's decision and the rankers' promotion gates.

It serves and promotes only rankers whose gate passed (assets/rankers.py, recsys.promotion); with none,
it keeps the current lists when they come from promoted models, or fails (docs/operations.md,
"Promotion gate").
"""

from pathlib import Path

import dagster as dg
import polars as pl

from assets.catalog import IO_RETRY, SERVING_FRESHNESS, catalog, observe
from assets.common import DUCKDB_POOL
from assets.metadata import md, table_metadata
from assets.partitions import cutoff_partitions
from assets.rankers import RANKER_STAGES, current_rankers, lgbm_ranker, sequence_ranker, split_key
from recsys.promotion import no_ranker_passed_message, served_from_promoted, serving_choice
from resources.datasets import DatasetSource
from resources.model_store import ModelStore
from resources.warehouse import Warehouse


class RecommendationsConfig(dg.Config):
    k: int = 20
    export_dir: str = ""  # default $RECDAG_DATA_DIR/exports


def _final_choice(warehouse: Warehouse, current: dict[str, dict], best: str) -> tuple[tuple[str, str], str, list[str], str]:
    """((model, version), table, rankers to promote, note) of what to serve, from final_stage's decision.

    A ranker chosen by the guard is served and promoted; a blend (``blend``, or ``blend+<channel>`` with a
    channel's list) promotes the rankers it fuses; a channel or the pool is served as it is and promotes nothing. Without a decision that judged
    exactly the rankers (and versions) that passed now (final_stage not materialized since they
    changed), the best passed ranker is served, as before the guard, and the note says so."""
    passed = ",".join(f"{n}@{current[n]['version']}" for n in RANKER_STAGES if n in current and current[n]["gate_passed"])
    decision = None
    if warehouse.table_exists("candidates.final") and warehouse.table_exists("models.final_stage"):
        logged = warehouse.query("SELECT stage, kind, rankers_passed, run_id FROM models.final_stage ORDER BY decided_at DESC LIMIT 1")
        stages = warehouse.query("SELECT DISTINCT source_stage FROM candidates.final")["source_stage"].to_list()
        if logged.height and stages == [logged["stage"][0]] and logged["rankers_passed"][0] == passed:
            decision = logged.row(0, named=True)
    if decision is None:
        why = "gate passed; promoted (no final_stage decision for the rankers that passed now: materialize final_stage)"
        return (best, current[best]["version"]), f"candidates.{best}", [best], why
    stage, kind = decision["stage"], decision["kind"]
    if kind == "ranker":
        return (stage, current[stage]["version"]), "candidates.final", [stage], "final stage: ranker, gate passed; promoted"
    if kind == "blend":  # "blend" (the rankers) or "blend+<channel>" (the rankers and that channel's list)
        fused = [entry.split("@")[0] for entry in decision["rankers_passed"].split(",")]
        version = "+".join(current[n]["version"] for n in fused)
        channel = stage.removeprefix("blend").removeprefix("+")
        what = ", ".join(fused) + (f" with the channel {channel}" if channel else "")
        return (stage, version), "candidates.final", fused, f"final stage: blend of {what}; promoted"
    return (
        (stage, f"{kind}@{decision['run_id'][:8]}"),
        "candidates.final",
        [],
        f"final stage: {kind} beat every ranker on valid; nothing promoted",
    )


def _served_now(warehouse: Warehouse) -> tuple[str, str] | None:
    """(model, model_version) of serving.recommendations when it holds one model's lists."""
    if not warehouse.table_exists("serving.recommendations"):
        return None
    served = warehouse.query("SELECT DISTINCT model, model_version FROM serving.recommendations")
    return served.row(0) if served.height == 1 else None


@dg.asset(
    deps=[lgbm_ranker, sequence_ranker, "final_stage"],
    pool=DUCKDB_POOL,
    group_name="rankers",
    partitions_def=cutoff_partitions,
    kinds={"duckdb", "parquet"},
    freshness_policy=SERVING_FRESHNESS,
    retry_policy=IO_RETRY,  # writes the Parquet export
    **catalog("serving.recommendations"),
    description=(
        "serving.recommendations: final top-K per user of the latest window (the test fold's users, whose pools were built "
        "from train + valid), exported as Parquet. Serves final_stage's choice (the best on held-out valid users of the rankers "
        "whose ndcg_regression check passed, their blend, the pool and every channel) and promotes the rankers it uses; the gate "
        "compares a ranker with the last promoted model of the same name, dataset, protocol and cut-off rule. If no ranker passed, it keeps serving the current lists when they come from the promoted "
        "comparable model, or a blend of promoted rankers (recsys.promotion.served_from_promoted; nothing is promoted; the failed check raises the alert); with no such lists it fails, naming each "
        "ranker's valid NDCG@10 and floor. It never serves a model that failed the gate."
    ),
)
def recommendations(
    context: dg.AssetExecutionContext, config: RecommendationsConfig, warehouse: Warehouse, model_store: ModelStore, source: DatasetSource
):
    key = split_key(warehouse, source)
    current = current_rankers(context, warehouse, model_store, key)
    if not current:
        raise dg.Failure(f"no ranker trained on {' | '.join(key)}: materialize lgbm_ranker or sequence_ranker first", allow_retries=False)
    scored = {n: r["valid_ndcg10"] for n, r in current.items()}
    gates = {n: r["gate_passed"] for n, r in current.items()}
    export_dir = Path(config.export_dir or Path(warehouse.data_dir) / "exports")
    export_dir.mkdir(parents=True, exist_ok=True)
    path = export_dir / "recommendations.parquet"
    best = serving_choice(current)
    if best is None:
        dataset, protocol, rule = key
        promoted = {
            (n, r["version"])
            for n in RANKER_STAGES
            if (r := model_store.latest(warehouse, n, promoted_only=True, dataset=dataset, protocol=protocol, cutoff_rule=rule))
        }
        served = _served_now(warehouse)
        why = no_ranker_passed_message(current)
        if served is None or not served_from_promoted(served, promoted):
            raise dg.Failure(
                f"promotion gate: no ranker passed ({why}) and serving.recommendations does not hold a promoted comparable "
                f"model's lists for {' | '.join(key)}; nothing safe to serve. Investigate the regression, or promote a model "
                "deliberately (ModelStore.promote).",
                allow_retries=False,  # a gate verdict, not a transient failure
            )
        recs = warehouse.table("serving.recommendations")
        recs.write_parquet(path)
        context.log.warning(f"promotion gate: no ranker passed ({why}); still serving {served[0]}@{served[1]}")
        return dg.MaterializeResult(
            metadata={
                **table_metadata(warehouse, "serving.recommendations"),
                "served": f"kept {served[0]}@{served[1]} (promoted earlier); no ranker of this run passed the gate",
                "chosen_ranker": served[0],
                "gate": why,
                "gate_passed": dg.MetadataValue.json(gates),
                "valid_ndcg10": dg.MetadataValue.json(scored),
                "users": recs["user_id"].n_unique(),
                "rows": recs.height,
                "parquet": str(path),
            }
        )
    served, table, promote, note = _final_choice(warehouse, current, best)
    if table != "candidates.final":
        context.log.warning(f"serving {best}: {note}")
    recs = warehouse.query(
        f"SELECT user_id, item_id, score, rank FROM {table} WHERE fold = 'test' AND rank <= $k ORDER BY user_id, rank", {"k": config.k}
    ).with_columns(pl.lit(served[0]).alias("model"), pl.lit(served[1]).alias("model_version"))
    warehouse.write_table("serving.recommendations", recs)
    recs.write_parquet(path)
    for name in promote:
        model_store.promote(warehouse, name, current[name]["version"], run_id=current[name]["run_id"])
    observe(context, warehouse, "models.registry")
    return dg.MaterializeResult(
        metadata={
            **table_metadata(warehouse, "serving.recommendations"),
            "served": f"{served[0]}@{served[1]} ({note})",
            "final_stage": served[0],
            "promoted": ", ".join(promote) or "none",
            "chosen_ranker": best,
            "gate_passed": dg.MetadataValue.json(gates),
            "valid_ndcg10": dg.MetadataValue.json(scored),
            "users": recs["user_id"].n_unique(),
            "rows": recs.height,
            "parquet": str(path),
            "preview": md(recs.head(20)),
        }
    )
