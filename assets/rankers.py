"""ranker_dataset → lgbm_ranker · sequence_ranker → recommendations (with the NDCG regression gate)."""

from dataclasses import asdict
from pathlib import Path

import dagster as dg
import polars as pl

from assets.common import DUCKDB_POOL, GPU_POOL, load_items, load_split, load_users, with_fold
from assets.features import selected_features
from assets.metadata import md
from assets.retrieval import candidate_pool
from recsys.event_features import with_selected_attributes
from recsys.rankers import LGBMRanker, LGBMRankerParams, build_ranker_frame, feature_columns
from resources.compute import ComputeResource
from resources.model_store import ModelStore
from resources.warehouse import Warehouse

RANKER_STAGES = ("lgbm_ranker", "sequence_ranker")


class RankerDatasetConfig(dg.Config):
    label_mode: str = "binary"  # binary | graded


@dg.asset(
    deps=[candidate_pool, selected_features],
    pool=DUCKDB_POOL,
    group_name="rankers",
    kinds={"polars", "duckdb"},
    description="features.ranker_valid (labelled by the valid window) and features.ranker_test (no labels: test truth is for evaluation only).",
)
def ranker_dataset(context: dg.AssetExecutionContext, config: RankerDatasetConfig, warehouse: Warehouse) -> dg.MaterializeResult:
    data = load_split(warehouse)
    selected = warehouse.table("features.selected_features")["feature"].to_list()
    users, user_features = with_selected_attributes(load_users(warehouse), "user_id", selected)
    items, item_features = with_selected_attributes(load_items(warehouse), "item_id", selected)
    chosen = [f for f in user_features if f not in item_features] + [f for f in item_features if f not in user_features]
    pool = warehouse.table("candidates.pool")
    frames = {}
    for fold in ("valid", "test"):
        history, target = data.fold(fold)
        fold_pool = pool.filter(pl.col("fold") == fold).drop("fold")
        frame = build_ranker_frame(
            fold_pool,
            history,
            items,
            users,
            selected_features=chosen,
            target=target if fold == "valid" else None,
            label_mode=config.label_mode,
        )
        warehouse.write_table(f"features.ranker_{fold}", frame)
        frames[fold] = frame
    valid = frames["valid"]
    positives = valid.group_by("user_id").agg(pl.col("label").max())
    return dg.MaterializeResult(
        metadata={
            "rows": dg.MetadataValue.json({fold: f.height for fold, f in frames.items()}),
            "selected_attributes": ", ".join(chosen) or "none",
            "n_features": len(feature_columns(valid)),
            "valid_label_rate": float((valid["label"] > 0).mean()),
            "valid_users_with_a_positive_in_pool": int((positives["label"] > 0).sum()),
            "valid_users": positives.height,
        }
    )


class RankerConfig(dg.Config):
    params: dict = {}  # overrides of the ranker's params dataclass
    # LightGBM only: candidate settings tried on top of `params`; the one with the best NDCG@10 on the
    # held-out valid users wins (model selection on valid, never on test).
    params_grid: list[dict] = [{}, {"num_leaves": 7, "min_data_in_leaf": 50}]
    k: int = 100  # ranked list length written for evaluation
    max_ndcg_drop: float = 0.10  # blocking: valid NDCG@10 may fall at most this share below the promoted model


def _gate(context, warehouse: Warehouse, store: ModelStore, name: str, ndcg: float, max_drop: float) -> dg.AssetCheckResult:
    promoted = store.latest(warehouse, name, promoted_only=True)
    baseline = promoted["metrics"].get("valid_ndcg10") if promoted else None
    floor = None if baseline is None else baseline * (1 - max_drop)
    passed = floor is None or ndcg >= floor
    description = (
        f"valid NDCG@10 {ndcg:.4f}; no promoted model yet"
        if floor is None
        else f"valid NDCG@10 {ndcg:.4f} vs promoted {baseline:.4f} (floor {floor:.4f})"
    )
    warehouse.record_check(
        name, "ndcg_regression", None, passed, "ERROR", {"ndcg": ndcg, "baseline": baseline, "floor": floor}, context.run_id
    )
    return dg.AssetCheckResult(
        check_name="ndcg_regression",
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=description,
        metadata={"valid_ndcg10": ndcg, "promoted_ndcg10": baseline if baseline is not None else -1.0},
    )


def _write_ranked(warehouse: Warehouse, stage: str, ranked: pl.DataFrame) -> None:
    warehouse.write_table(f"candidates.{stage}", with_fold(ranked, "test"))


def _ndcg_gate_spec(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        "ndcg_regression",
        asset=asset,
        blocking=True,
        description="ERROR: valid NDCG@10 not more than the configured share below the last promoted model",
    )


@dg.asset(
    deps=[ranker_dataset],
    pool=DUCKDB_POOL,
    group_name="rankers",
    kinds={"lightgbm", "duckdb"},
    check_specs=[_ndcg_gate_spec("lgbm_ranker")],
    description="LightGBM LambdaRank grouped by user, early stopping on NDCG@10 of held-out valid users; test-fold ranking in candidates.lgbm_ranker.",
)
def lgbm_ranker(context: dg.AssetExecutionContext, config: RankerConfig, warehouse: Warehouse, model_store: ModelStore):
    valid = warehouse.table("features.ranker_valid")
    test = warehouse.table("features.ranker_test")
    candidates = []
    for extra in config.params_grid or [{}]:
        params = LGBMRankerParams(**{**config.params, **extra})
        candidates.append((LGBMRanker(params).fit(valid, log=context.log.info), params))
    tried = pl.DataFrame(
        {"setting": [str(p) for p in (config.params_grid or [{}])], "valid_ndcg10": [m.valid_ndcg10 for m, _ in candidates]}
    )
    model, params = max(candidates, key=lambda mp: mp[0].valid_ndcg10)
    _write_ranked(warehouse, "lgbm_ranker", model.recommend(test, k=config.k))
    metrics = {
        "valid_ndcg10": model.valid_ndcg10,
        "best_iteration": model.best_iteration,
        "n_train_users": model.n_train_users,
        "n_valid_users": model.n_valid_users,
    }
    saved = model_store.save(warehouse, "lgbm_ranker", model.to_bytes(), asdict(params), metrics, context.run_id)
    importance = model.feature_importance().sort("gain", descending=True)
    return dg.MaterializeResult(
        metadata={
            **metrics,
            "model_version": saved["version"],
            "model_path": saved["path"],
            "feature_importance": md(importance, 40),
            "settings_tried": md(tried),
        },
        check_results=[_gate(context, warehouse, model_store, "lgbm_ranker", model.valid_ndcg10, config.max_ndcg_drop)],
    )


@dg.asset(
    deps=[ranker_dataset],
    pool=GPU_POOL,
    group_name="rankers",
    kinds={"torch", "duckdb"},
    check_specs=[_ndcg_gate_spec("sequence_ranker")],
    description="BERT-style transformer reranker (transformers BertModel) over the user's recent items, trained listwise; through the compute resource.",
)
def sequence_ranker(
    context: dg.AssetExecutionContext, config: RankerConfig, warehouse: Warehouse, model_store: ModelStore, compute: ComputeResource
):
    from recsys.rankers.sequence import SequenceRanker, SequenceRankerParams

    data = load_split(warehouse)
    valid = warehouse.table("features.ranker_valid")
    test = warehouse.table("features.ranker_test")
    runtime = compute.runtime(log=context.log.info)
    params = SequenceRankerParams(**config.params)
    valid_history, _ = data.fold("valid")
    test_history, _ = data.fold("test")
    items = load_items(warehouse)
    model = SequenceRanker(params).fit(valid, valid_history, items, runtime=runtime)
    _write_ranked(warehouse, "sequence_ranker", model.recommend(test, test_history, k=config.k, runtime=runtime))
    metrics = {"valid_ndcg10": model.valid_ndcg10, "best_epoch": model.best_epoch, "device": runtime.device}
    saved = model_store.save(warehouse, "sequence_ranker", model.to_bytes(), asdict(params), metrics, context.run_id)
    return dg.MaterializeResult(
        metadata={
            **metrics,
            "model_version": saved["version"],
            "train_losses": dg.MetadataValue.json([round(x, 4) for x in model.train_losses]),
            "compute": dg.MetadataValue.json(compute.describe()),
        },
        check_results=[_gate(context, warehouse, model_store, "sequence_ranker", model.valid_ndcg10, config.max_ndcg_drop)],
    )


class RecommendationsConfig(dg.Config):
    k: int = 20
    export_dir: str = ""  # default $RECDAG_DATA_DIR/exports


@dg.asset(
    deps=[lgbm_ranker, sequence_ranker],
    pool=DUCKDB_POOL,
    group_name="rankers",
    kinds={"duckdb", "parquet"},
    description=(
        "serving.recommendations: final top-K per user of the latest window (the test fold's users, whose pools "
        "were built from train + valid) from the ranker with the better valid NDCG@10; exported as Parquet."
    ),
)
def recommendations(context: dg.AssetExecutionContext, config: RecommendationsConfig, warehouse: Warehouse, model_store: ModelStore):
    latest = {name: model_store.latest(warehouse, name) for name in RANKER_STAGES}
    scored = {n: r["metrics"].get("valid_ndcg10") or 0.0 for n, r in latest.items() if r}
    best = max(scored, key=scored.get)
    recs = warehouse.query(
        f"SELECT user_id, item_id, score, rank FROM candidates.{best} WHERE rank <= $k ORDER BY user_id, rank", {"k": config.k}
    ).with_columns(pl.lit(best).alias("model"), pl.lit(latest[best]["version"]).alias("model_version"))
    warehouse.write_table("serving.recommendations", recs)
    export_dir = Path(config.export_dir or Path(warehouse.data_dir) / "exports")
    export_dir.mkdir(parents=True, exist_ok=True)
    path = export_dir / "recommendations.parquet"
    recs.write_parquet(path)
    model_store.promote(warehouse, best, latest[best]["version"])
    return dg.MaterializeResult(
        metadata={
            "chosen_ranker": best,
            "valid_ndcg10": dg.MetadataValue.json(scored),
            "users": recs["user_id"].n_unique(),
            "rows": recs.height,
            "parquet": str(path),
            "preview": md(recs.head(20)),
        }
    )
