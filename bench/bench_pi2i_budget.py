"""PI2I serving under a pair budget: how much each trigger list's depth costs and buys, on a kept warehouse.

    python bench/bench_scale.py --sizes 1000000 --keep /tmp/scale          # a finished pipeline
    python bench/bench_pi2i_budget.py --keep /tmp/scale/1000000 --budgets none,20e6,10e6,5e6

PI2I serving scores every (trigger, slot) of each user's trigger lists with the PRS model, so its cost is
users × triggers × depth. ``max_score_pairs`` (``PI2I(...)``, recsys/pi2i/serve.py) caps that product: over
the cap each list is scored to the depth that fits it (its co-occurrence-order head). For each budget this
loads the fold's saved PI2I model from the kept run's model store, recommends the top 200 for the fold's
users as ``pi2i_candidates`` does, and reports the wall time, the peak RSS growth of the call and NDCG@10,
recall@200 against the fold's target window, with the paired per-user difference to the uncapped lists
(bootstrap 95% interval, 1,000 resamples, seed 0). The fold is ``valid`` by default: the budget's default
is chosen there, never on test. Results go to bench/results_pi2i_budget.md (``--out``), newest first.
"""

from __future__ import annotations

import argparse
import platform
import resource
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assets.common import every_target_user, fold_users, load_split  # noqa: E402
from recsys.metrics.accuracy import per_user_metrics  # noqa: E402
from recsys.pi2i import PI2I  # noqa: E402
from recsys.runtime import TorchRuntime  # noqa: E402
from resources.model_store import ModelStore  # noqa: E402
from resources.warehouse import Warehouse  # noqa: E402

KEYS = (("ndcg", 10), ("recall", 200))


def _rss_gib() -> float:
    with open("/proc/self/status") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return kib / 2**20


def _paired(per_user: pl.DataFrame, base: pl.DataFrame, metric: str, k: int, rng: np.random.Generator) -> str:
    d = per_user.join(base, on=["user_id", "metric", "k"], suffix="_full").filter((pl.col("metric") == metric) & (pl.col("k") == k))
    x = (d["value"] - d["value_full"]).to_numpy()
    boots = x[rng.integers(0, len(x), (1000, len(x)))].mean(axis=1)
    return f"{x.mean():+.4f} [{np.percentile(boots, 2.5):+.4f}, {np.percentile(boots, 97.5):+.4f}]"


def measure(keep: Path, fold: str, budgets: list[int | None]) -> tuple[list[dict], dict]:
    data_dir = str(keep / "data")
    warehouse, store = Warehouse(data_dir=data_dir), ModelStore(data_dir=data_dir)
    split = load_split(warehouse)
    history, target = split.fold(fold)
    latest = store.latest(warehouse, f"pi2i_{fold}")
    if latest is None:
        raise SystemExit(f"{keep}: no pi2i_{fold} model in models.registry; materialize pi2i_scorer there first")
    blob = store.load(latest["path"])
    users = fold_users(fold, target, history, every_target_user(split.params))
    truth = target.filter(pl.col("user_id").is_in(users.implode())).select("user_id", "item_id").unique()
    rows, base = [], None
    for budget in budgets:
        model = PI2I.from_bytes(blob, runtime=TorchRuntime(log=lambda m: None))
        model.params["max_score_pairs"] = budget
        rss0, peak0 = _rss_gib(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        start = time.monotonic()
        recs = model.recommend(users, k=200, exclude_seen=True)
        wall = time.monotonic() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        per_user = per_user_metrics(recs, truth, ks=[10, 200], metrics=["ndcg", "recall"])
        means = per_user.group_by("metric", "k").agg(pl.col("value").mean())
        row = {
            "budget": budget,
            "depth": model.serving_depth_,
            "pairs": int(np.isin(model.triggers_.user_pos, model.users_.positions(users.to_numpy())).sum()) * model.serving_depth_,
            "wall_s": wall,
            "peak_growth_gib": max(0.0, peak - max(peak0, rss0)),
            **{f"{m}@{k}": means.filter((pl.col("metric") == m) & (pl.col("k") == k))["value"][0] for m, k in KEYS},
        }
        if base is None:
            base = per_user
        else:
            rng = np.random.default_rng(0)
            row.update({f"d_{m}@{k}": _paired(per_user, base, m, k, rng) for m, k in KEYS})
        rows.append(row)
        print(f"[bench_pi2i_budget] {row}", flush=True)
    return rows, {"users": len(users), "truth": truth.height, "model": latest["version"]}


def render(rows: list[dict], info: dict, args, head: str) -> str:
    lines = [
        f"### {datetime.now():%Y-%m-%d %H:%M}: {args.keep}, fold {args.fold} (HEAD {head})",
        "",
        f"Machine: {platform.machine()}, 2 cores, Python {platform.python_version()}; `python bench/bench_pi2i_budget.py "
        f"--keep {args.keep} --fold {args.fold} --budgets {args.budgets}`. {info['users']:,} {args.fold} users, "
        f"{info['truth']:,} target pairs, model version {info['model']}. Peak RSS growth: ru_maxrss over the RSS before the call "
        "(0 when an earlier, larger call set the peak).",
        "",
        "| max_score_pairs | depth scored | pairs scored | wall s | peak growth GiB | NDCG@10 | recall@200 | NDCG@10 − uncapped | recall@200 − uncapped |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        budget = "none" if r["budget"] is None else f"{r['budget']:,}"
        lines.append(
            f"| {budget} | {r['depth']} | {r['pairs']:,} | {r['wall_s']:.1f} | {r['peak_growth_gib']:.2f} | {r['ndcg@10']:.4f} | "
            f"{r['recall@200']:.4f} | {r.get('d_ndcg@10', '')} | {r.get('d_recall@200', '')} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", required=True, help="a kept bench_scale run (its data/ holds the warehouse and models)")
    ap.add_argument("--fold", default="valid", choices=["valid", "test"])
    ap.add_argument("--budgets", default="none,20e6,10e6,5e6", help="comma-separated max_score_pairs; 'none' = uncapped, first")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_pi2i_budget.md"))
    args = ap.parse_args()
    budgets = [None if b == "none" else int(float(b)) for b in args.budgets.split(",")]
    if budgets[0] is not None:
        raise SystemExit("--budgets must start with 'none' (the uncapped lists the others are compared with)")
    rows, info = measure(Path(args.keep), args.fold, budgets)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    out = Path(args.out)
    title = "## PI2I serving under a pair budget (bench/bench_pi2i_budget.py)\n\n"
    old = out.read_text().removeprefix(title) if out.exists() else ""
    out.write_text(title + render(rows, info, args, head) + ("\n" + old if old else ""))
    print(f"[bench_pi2i_budget] wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
