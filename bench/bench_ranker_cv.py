"""How much can LightGBM add over EASE on ML-100K's files split? 5-fold user cross-validation on the valid fold only.

    python bench/bench_ranker_cv.py                          # makes the files-protocol warehouse, writes bench/results_ranker_cv.md
    python bench/bench_ranker_cv.py --warehouse <data dir>/warehouse.duckdb   # an existing files-protocol run

The ranker's training table (``features.ranker_valid``: the valid fold's pools, channels fit on train,
labelled by the valid fold) is split into 5 folds of users (seeded). Each LightGBM variant trains on
4 folds' labelled lists and ranks the 5th fold's pools; every user's NDCG@10 is computed against the
user's full valid truth (relevant items outside the pool count in the ideal DCG). The same users'
NDCG@10 of the EASE channel's own order (``ease__rank`` in the pool: EASE's top 20 are always kept)
is the baseline: the paired mean difference over the 943 users with a normal 95% interval, and the
ratio. The test fold is never read: this is a design study on valid, the way every choice is made.

Variants: the two settings of the default ``RankerConfig.params_grid`` (31 leaves; 7 leaves, 50 rows
per leaf), stronger regularisation, other objectives, and LightGBM boosted from EASE's order
(``init_score`` = -log rank); and the 7-leaf ranker's list fused with EASE's by reciprocal rank, the
final-stage guard's ``blend+ease`` candidate. Each trains a fixed number of rounds (no early stopping: the CV is the
held-out measure), one thread, as the pipeline does.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import lightgbm as lgb
import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from recsys.rankers.features import categorical_columns, feature_columns  # noqa: E402
from recsys.rankers.lgbm import LGBMRankerParams, _group_sizes, _matrix  # noqa: E402

N_FOLDS = 5
DISCOUNT = 1.0 / np.log2(np.arange(2, 12))
BASE = {"num_leaves": 7, "min_data_in_leaf": 50}
VARIANTS = [  # name, LightGBM params over LGBMRankerParams' defaults, rounds, boosted from EASE's order
    ("grid setting 1: 31 leaves (defaults)", {}, 200, False),
    ("grid setting 2: 7 leaves, 50 rows/leaf", BASE, 200, False),
    ("3 leaves, 100 rows/leaf, 600 rounds", {"num_leaves": 3, "min_data_in_leaf": 100}, 600, False),
    ("7 leaves, 200 rows/leaf, 300 rounds", {"num_leaves": 7, "min_data_in_leaf": 200}, 300, False),
    ("7 leaves, rank_xendcg", {**BASE, "objective": "rank_xendcg"}, 200, False),
    ("7 leaves, binary logloss", {**BASE, "objective": "binary", "metric": "auc"}, 200, False),
    ("7 leaves, boosted from EASE's order, 50 rounds", BASE, 50, True),
    ("7 leaves, boosted from EASE's order, 150 rounds", BASE, 150, True),
]
# The final-stage candidate ``blend+ease`` (recsys.final_stage.channel_blend): the grid's 7-leaf ranker's
# cross-fitted scores fused with EASE's list by reciprocal rank, as ``blend`` fuses lists.
FUSED = ("grid setting 2 fused with EASE's list (RRF, the guard's blend+ease)", BASE, 200)


def make_warehouse(tmp: Path, split_seed: int) -> Path:
    """One files-protocol pipeline run (bench_final_stage's random 8:1:1 split of ML-100K)."""
    from bench_final_stage import random_split

    data, home = tmp / "data", tmp / "home"
    home.mkdir(parents=True)
    shutil.copy(ROOT / "orchestration" / "dagster.yaml", home / "dagster.yaml")
    cached = ROOT / "data" / "sources" / "ml-100k"
    if not cached.exists():
        raise SystemExit(f"{cached} missing: run `make run` once (it caches ML-100K there)")
    shutil.copytree(cached, data / "sources" / "ml-100k")
    split = random_split(cached / "ml-100k.inter", tmp / "split" / "ml-100k", split_seed)
    env = {
        **os.environ,
        "RECDAG_DATA_DIR": str(data),
        "DAGSTER_HOME": str(home),
        "RECDAG_DATASET": "movielens-100k",
        "RECDAG_SPLIT": f"files:{split}",
        "TQDM_DISABLE": "1",
    }
    proc = subprocess.run([sys.executable, "-m", "orchestration.run", "--plain"], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"files run failed: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return data / "warehouse.duckdb"


def load(path: Path) -> pl.DataFrame:
    with duckdb.connect(str(path), read_only=True) as con:
        frame = con.execute("SELECT * FROM features.ranker_valid").pl()
        truth = con.execute(
            "SELECT user_id, count(DISTINCT item_id)::INT AS n_truth FROM staging.split WHERE fold = 'valid' GROUP BY 1"
        ).pl()
    return frame.join(truth, on="user_id", how="left").sort("user_id", "item_id")


def user_ndcg(part: pl.DataFrame, score: np.ndarray) -> np.ndarray:
    """NDCG@10 per user of ``part`` (user order) ranked by ``score``, against the full valid truth."""
    ranked = (
        part.select("user_id", "label", "n_truth")
        .with_columns(pl.Series("s", score))
        .sort(["user_id", "s"], descending=[False, True])
        .with_columns(pl.int_range(pl.len()).over("user_id").alias("r"))
        .filter(pl.col("r") < 10)
    )
    ranked = ranked.with_columns(pl.Series("g", (ranked["label"].to_numpy() > 0) * DISCOUNT[ranked["r"].to_numpy()]))
    per_user = ranked.group_by("user_id").agg(pl.col("g").sum(), pl.col("n_truth").first()).sort("user_id")
    ideal = np.cumsum(DISCOUNT)[np.clip(per_user["n_truth"].to_numpy(), 1, 10) - 1]
    return per_user["g"].to_numpy() / ideal


def ease_prior(part: pl.DataFrame) -> np.ndarray:
    return -np.log(part["ease__rank"].cast(pl.Float64).fill_null(301.0).to_numpy())


def rrf_with_ease(part: pl.DataFrame, score: np.ndarray, depth: int = 100) -> np.ndarray:
    """``blend``'s reciprocal-rank fusion of the ranker's top ``depth`` (its list) and EASE's list: each
    list an item is in adds 1/(60 + rank); ties go to the ranker's order (the first list)."""
    ranked = part.select("user_id").with_columns(pl.Series("s", score), pl.int_range(pl.len()).alias("_i"))
    ranked = ranked.with_columns(pl.col("s").rank("ordinal", descending=True).over("user_id").alias("r"))
    own = np.where(ranked["r"].to_numpy() <= depth, 1.0 / (60.0 + ranked["r"].to_numpy()), 0.0)
    ease = part["ease__rank"].cast(pl.Float64).to_numpy()
    fused = own + np.where(np.isnan(ease), 0.0, 1.0 / (60.0 + np.nan_to_num(ease, nan=1.0)))
    return fused - 1e-9 * ranked["r"].to_numpy() / (1.0 + ranked["r"].to_numpy().max())


def cross_validate(frame: pl.DataFrame, cols: list[str], params: dict, rounds: int, from_ease: bool, fuse: bool = False) -> np.ndarray:
    fields = LGBMRankerParams.__dataclass_fields__
    lgb_params = {**LGBMRankerParams(**{k: v for k, v in params.items() if k in fields}).lgb_params()}
    lgb_params.update({k: v for k, v in params.items() if k not in fields})
    cats = [c for c in categorical_columns(frame) if c in cols]
    scores = []
    for f in range(N_FOLDS):
        train = frame.filter((pl.col("_cv") != f) & (pl.col("label") > 0).any().over("user_id"))
        held = frame.filter(pl.col("_cv") == f)
        data = lgb.Dataset(
            _matrix(train, cols),
            label=train["label"].to_numpy(),
            group=_group_sizes(train["user_id"].to_numpy()),
            feature_name=cols,
            categorical_feature=cats,
            init_score=ease_prior(train) if from_ease else None,
        )
        booster = lgb.train(lgb_params, data, num_boost_round=rounds)
        score = booster.predict(_matrix(held, cols)) + (ease_prior(held) if from_ease else 0.0)
        scores.append(user_ndcg(held, rrf_with_ease(held, score) if fuse else score))
    return np.concatenate(scores)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warehouse", default="")
    ap.add_argument("--split-seed", type=int, default=2026)
    ap.add_argument("--cv-seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_ranker_cv.md"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ranker_cv_") as tmp:
        path = Path(args.warehouse) if args.warehouse else make_warehouse(Path(tmp), args.split_seed)
        frame = load(path)
    users = frame["user_id"].unique().sort().to_numpy()
    fold_of = dict(zip(users.tolist(), (np.random.default_rng(args.cv_seed).permutation(len(users)) % N_FOLDS).tolist()))
    frame = frame.with_columns(pl.col("user_id").replace_strict(fold_of, return_dtype=pl.Int32).alias("_cv"))
    cols = [c for c in feature_columns(frame) if c not in ("n_truth", "_cv")]
    folds = [frame.filter(pl.col("_cv") == f) for f in range(N_FOLDS)]
    ease = np.concatenate([user_ndcg(p, -p["ease__rank"].cast(pl.Float64).fill_null(1e9).to_numpy()) for p in folds])
    pool = np.concatenate([user_ndcg(p, -p["pool_rank"].cast(pl.Float64).to_numpy()) for p in folds])
    rows = [("EASE channel's order (baseline)", ease, 0.0), ("pool's fused order (rrf)", pool, 0.0)]
    for name, params, rounds, from_ease in VARIANTS:
        start = time.monotonic()
        rows.append((name, cross_validate(frame, cols, params, rounds, from_ease), time.monotonic() - start))
        print(f"[bench_ranker_cv] {name}: {rows[-1][1].mean():.4f} ({rows[-1][2]:.0f} s)", flush=True)
    start = time.monotonic()
    rows.append((FUSED[0], cross_validate(frame, cols, FUSED[1], FUSED[2], False, fuse=True), time.monotonic() - start))
    lines = [
        "## LightGBM over the pool against EASE, 5-fold user CV on the valid fold (bench/bench_ranker_cv.py)",
        "",
        f"ML-100K, random 8:1:1 per-user split (seed {args.split_seed}, as bench_final_stage's `files` scenario); "
        f"`features.ranker_valid`: {frame.height:,} rows, {len(users):,} users, {len(cols)} features; CV folds by user (seed {args.cv_seed}). "
        f"NDCG@10 per user against the full valid truth; paired difference against EASE's order on the same users (normal 95% interval). "
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared), LightGBM {lgb.__version__}, one thread. The test fold is not read.",
        "",
        "| ranking of the valid pools | NDCG@10 | − EASE [95% interval] | / EASE | wall s |",
        "|---|---|---|---|---|",
    ]
    for name, values, wall in rows:
        diff = values - ease
        half = 1.96 * diff.std(ddof=1) / np.sqrt(len(diff))
        lines.append(
            f"| {name} | {values.mean():.4f} | {diff.mean():+.4f} [{diff.mean() - half:+.4f}, {diff.mean() + half:+.4f}] "
            f"| {values.mean() / ease.mean():.3f} | {wall:.0f} |"
        )
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
