"""The LightGBM ranker's two cost changes (recsys/rankers/lgbm.py, assets/rankers.py lgbm_ranker):

(a) ``fit_feature_sets`` refits (``refit_full``) only the winning (feature list × setting) candidate; before, every
    candidate was fitted with its refit (``LGBMRanker(params).fit(frame, feature_cols=cols)``) and the best held-out
    valid NDCG@10 kept (ties to the earlier). Same winner, same model: the bench checks the test-frame predictions
    (and the model text) are identical and reports the time of both.
(b) ``RankerConfig.max_train_rows``: past it, ``_labelled_rows_within`` keeps the whole lists of a seeded sample of
    the users with a positive label. Fit time, peak RSS and quality at several budgets.

Usage::

    python bench/bench_ranker_budget.py       # the 0.2M-event synthetic pipeline's warehouse, writes bench/results_ranker_budget.md
    python bench/bench_ranker_budget.py --warehouse /path/to/warehouse.duckdb --budgets 0,100000

Protocol: a finished pipeline's warehouse (features.ranker_valid, features.ranker_test, features.selected_features,
staging.split), copied to a scratch folder and opened read-only. One child process per measurement (peak RSS = the
child's ru_maxrss from os.wait4; it holds the valid frame, the fits, then the test frame and its scores), LightGBM
with LGBMRankerParams' defaults (num_threads 1). Each child does what lgbm_ranker does: ``_labelled_rows_within`` at
its budget (0 = every row), ``_feature_sets`` of RankerConfig().feature_selections, the fits of
RankerConfig().params_grid, then scores features.ranker_test. Quality: the test fold's NDCG@10 of each model's top 10
over the test frame against the test fold's truth as the evaluation asset forms it (assets.common.fold_truth,
sample_truth), with recsys.metrics evaluate / bootstrap_ci / paired_test (500 resamples, seed 0, as
EvaluationConfig). Reading test here measures a cost/quality trade-off of a budget; nothing is chosen on it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assets.common import fold_truth, load_split, sample_truth  # noqa: E402
from assets.rankers import RankerConfig, _feature_sets, _labelled_rows_within  # noqa: E402
from bench.bench_ease_large import md  # noqa: E402
from recsys.metrics import bootstrap_ci, evaluate, paired_test  # noqa: E402
from recsys.rankers.features import LABEL  # noqa: E402
from recsys.rankers.lgbm import LGBMRanker, LGBMRankerParams, _score, fit_feature_sets, rank_frame  # noqa: E402
from resources.warehouse import load_sql  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
N_BOOT, SEED = 500, 0


class ReadOnlyWarehouse:
    """What the ranker helpers read of resources.warehouse.Warehouse, over one file opened read-only per query."""

    def __init__(self, path: Path):
        self.path = path

    def query(self, sql: str, params: dict | None = None) -> pl.DataFrame:
        con = duckdb.connect(str(self.path), read_only=True)
        try:
            return con.execute(sql, params or {}).pl()
        finally:
            con.close()

    def query_file(self, name: str, params: dict | None = None) -> pl.DataFrame:
        return self.query(load_sql(name), params)

    def table(self, name: str) -> pl.DataFrame:
        return self.query(f"SELECT * FROM {name}")


def fit_every_refit(frame: pl.DataFrame, feature_sets: dict, base: dict, grid: list[dict]):
    """The behaviour before the change: every candidate fitted with its refit_full, the best valid NDCG@10 kept
    (ties to the earlier list, then setting); identical lists fitted once, as fit_feature_sets did."""
    fitted, best = {}, None
    for name, cols in feature_sets.items():
        key = tuple(cols)
        if key not in fitted:
            fitted[key] = [LGBMRanker(LGBMRankerParams(**{**base, **extra})).fit(frame, feature_cols=list(cols)) for extra in grid]
        for extra, model in zip(grid, fitted[key]):
            if best is None or _score(model) > _score(best[0]):
                best = (model, extra, name)
    return best


def child(warehouse: Path, mode: str, budget: int, out: Path) -> None:
    wh = ReadOnlyWarehouse(warehouse)
    config = RankerConfig()
    frame = wh.table("features.ranker_valid")
    every = frame.filter((pl.col(LABEL) > 0).any().over("user_id"))
    all_rows, all_users = every.height, every["user_id"].n_unique()
    del every
    started = time.perf_counter()
    frame, said = _labelled_rows_within(wh, frame, budget)
    sample_s = time.perf_counter() - started
    labelled = frame.filter((pl.col(LABEL) > 0).any().over("user_id"))
    rows, users = labelled.height, labelled["user_id"].n_unique()
    del labelled
    feature_sets = _feature_sets(wh, frame, config.feature_selections)
    started = time.perf_counter()
    if mode == "old":
        model, extra, selection = fit_every_refit(frame, feature_sets, config.params, config.params_grid)
    else:
        choice = fit_feature_sets(frame, feature_sets, config.params, config.params_grid)
        model, selection = choice.model, choice.selection
        extra = next(e for e in config.params_grid if LGBMRankerParams(**{**config.params, **e}) == choice.params)
    fit_s = time.perf_counter() - started
    test = wh.table("features.ranker_test")
    scores = model.predict(test)
    np.save(out.with_suffix(".scores.npy"), scores)
    rank_frame(test, scores, 10).write_parquet(out.with_suffix(".recs.parquet"))
    out.write_text(
        json.dumps(
            {
                "mode": mode,
                "budget": budget,
                "said": said,
                "rows": rows,
                "users": users,
                "all_rows": all_rows,
                "all_users": all_users,
                "sample_s": round(sample_s, 1),
                "fit_s": round(fit_s, 1),
                "fits": len({tuple(c) for c in feature_sets.values()}) * len(config.params_grid),
                "selection": selection,
                "setting": str(extra),
                "best_iteration": model.best_iteration,
                "valid_ndcg10": model.valid_ndcg10,
                "n_train_users": model.n_train_users,
                "n_valid_users": model.n_valid_users,
                "model_sha256": hashlib.sha256(model.booster.model_to_string().encode()).hexdigest(),
            }
        )
    )


def measure(warehouse: Path, mode: str, budget: int, work: Path, log) -> dict:
    out = work / f"{mode}_{budget}.json"
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", mode, "--warehouse", str(warehouse), "--budget", str(budget), "--json", str(out)]
    )
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(f"child {mode} budget {budget} failed with status {status}")
    row = json.loads(out.read_text())
    row["wall_s"] = round(time.perf_counter() - started, 1)
    row["peak_rss_mib"] = round(usage.ru_maxrss / 1024)
    row["scores"] = np.load(out.with_suffix(".scores.npy"))
    row["recs"] = pl.read_parquet(out.with_suffix(".recs.parquet"))
    log(
        f"{mode} budget {budget or 'every row'}: {row['rows']:,} rows / {row['users']:,} users, fit {row['fit_s']} s "
        f"({row['selection']} {row['setting']}, valid NDCG@10 {row['valid_ndcg10']:.4f}), peak {row['peak_rss_mib']} MiB"
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--warehouse", type=Path, default=Path("/tmp/lg_syn/data/warehouse.duckdb"))
    ap.add_argument("--budgets", type=str, default="0,200000,100000,50000", help="max_train_rows values, 0 = every row (first)")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "ranker_budget_bench")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results_ranker_budget.md")
    ap.add_argument("--child", type=str, default=None, choices=["old", "new"])
    ap.add_argument("--budget", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.child:
        child(args.warehouse, args.child, args.budget, args.json)
        return

    def log(msg: str) -> None:
        print(msg, flush=True)

    load_start = os.getloadavg()
    args.work.mkdir(parents=True, exist_ok=True)
    copy = args.work / "warehouse.duckdb"
    shutil.copyfile(args.warehouse, copy)  # the pipeline's file is never opened, let alone locked
    budgets = [int(b) for b in args.budgets.split(",")]
    if budgets[0] != 0:
        raise SystemExit("--budgets must start with 0 (every row): the refit comparison and the paired tests use it")

    old = measure(copy, "old", 0, args.work, log)
    rows = [measure(copy, "new", b, args.work, log) for b in budgets]
    load_end = os.getloadavg()
    new = rows[0]
    same_scores = bool(np.array_equal(old["scores"], new["scores"]))
    same_model = old["model_sha256"] == new["model_sha256"]
    same_lists = old["recs"].equals(new["recs"])

    wh = ReadOnlyWarehouse(copy)
    _, target, every_truth = fold_truth(load_split(wh), "test")
    truth, sample = sample_truth(target, every_truth, SEED)
    per_user = [evaluate(r["recs"], truth, ks=(10,), metrics=("ndcg",), per_user=True) for r in rows]
    ci = [bootstrap_ci(p, n_boot=N_BOOT, seed=SEED).row(0, named=True) for p in per_user]
    paired = [None] + [paired_test(p, per_user[0], n_boot=N_BOOT, seed=SEED).row(0, named=True) for p in per_user[1:]]

    refit = pl.DataFrame(
        [
            {
                "fit_feature_sets": name,
                "fits": r["fits"],
                "refits": r["fits"] if r["mode"] == "old" else 1,
                "fit s": r["fit_s"],
                "peak RSS MiB": r["peak_rss_mib"],
                "winner": f"{r['selection']} {r['setting']}",
                "best_iteration": r["best_iteration"],
                "valid NDCG@10": round(r["valid_ndcg10"], 4),
            }
            for name, r in (("before: refit every candidate", old), ("now: refit the winner only", new))
        ]
    )
    table = pl.DataFrame(
        [
            {
                "max_train_rows": "every row (0)" if r["budget"] == 0 else f"{r['budget']:,}",
                "rows": f"{r['rows']:,} of {r['all_rows']:,}",
                "users (with a positive)": f"{r['users']:,} of {r['all_users']:,}",
                "n_train_users": r["n_train_users"],
                "fit s": r["fit_s"],
                "peak RSS MiB": r["peak_rss_mib"],
                "winner": f"{r['selection']} {r['setting']}",
                "valid NDCG@10 (held out)": round(r["valid_ndcg10"], 4),
                "test NDCG@10 [95% CI]": f"{c['value']:.4f} [{c['ci_low']:.4f}, {c['ci_high']:.4f}]",
                "vs every row [95% CI], p": "—"
                if p is None
                else f"{p['mean_diff']:+.4f} [{p['ci_low']:+.4f}, {p['ci_high']:+.4f}], p={p['p_value']:.3g}",
            }
            for r, c, p in zip(rows, ci, paired)
        ]
    )
    verdict = (
        "identical"
        if same_scores and same_model and same_lists
        else f"DIFFERENT (scores {same_scores}, model {same_model}, lists {same_lists})"
    )
    speed = old["fit_s"] / new["fit_s"] if new["fit_s"] else float("nan")
    text = [
        "## LightGBM ranker: refit the winner only, and the training-row budget (bench/bench_ranker_budget.py)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other jobs (load average {load_start[0]:.1f} at start, "
        f"{load_end[0]:.1f} at end), Python {platform.python_version()}, {datetime.now():%Y-%m-%d %H:%M}. "
        f"`python bench/bench_ranker_budget.py --budgets {args.budgets}` on a finished 0.2M-event synthetic pipeline's warehouse "
        f"(`{args.warehouse}`, copied and opened read-only): features.ranker_valid {old['all_rows']:,} rows of labelled lists "
        f"({old['all_users']:,} users with a positive), features.ranker_test scored whole. Each measurement is one child process "
        "(peak RSS from os.wait4, holding the valid frame, the fits and the scored test frame); LightGBM num_threads 1 "
        "(LGBMRankerParams' default); the fits are RankerConfig's: feature lists "
        f"{RankerConfig().feature_selections} × params_grid {RankerConfig().params_grid}.",
        "",
        "**Refit only the winner** (every labelled row): before, each candidate was fitted and refit on all labelled users; now "
        "the candidates are compared on their early-stopping models and only the winner is refit.",
        "",
        md(refit),
        "",
        f"Fit time {old['fit_s']} s → {new['fit_s']} s ({speed:.2f}× faster). The served model is {verdict}: "
        f"test-frame predictions {'bit-identical' if same_scores else 'differ'} over {len(new['scores']):,} rows, "
        f"model text {'identical' if same_model else 'differs'} (sha256), top-10 lists {'identical' if same_lists else 'differ'}.",
        "",
        "**max_train_rows** (now with the winner-only refit): the fits train on the whole lists of a seeded uniform sample of the "
        "users with a positive label whose rows fit the budget (`_labelled_rows_within`, seed 0). n_train_users = the fit's "
        "training users after its 20% early-stopping hold-out; valid NDCG@10 is that hold-out's (each budget's own held-out users, "
        "so the column compares loosely). Test NDCG@10: the top 10 of each model over features.ranker_test against the full "
        f"test-fold truth of {sample.n_sampled:,} test users (assets.common.fold_truth / sample_truth, as the evaluation asset; users "
        f"without a list score 0), bootstrap 95% intervals ({N_BOOT} resamples) and the paired difference with the every-row model "
        "(same users; paired t-test p). The test fold is read here to measure what a budget costs in quality, not to choose a "
        "model or a budget setting on it.",
        "",
        md(table),
        "",
    ]
    args.out.write_text("\n".join(text))
    log("\n".join(text))


if __name__ == "__main__":
    main()
