"""Run-to-run spread of the cascade over seeds: the train-and-evaluate job at one cut-off, once per seed.

    make run                                                    # a finished ML-100K run in data/
    python bench/bench_seed_spread.py --data-dir data --seeds 0,1,2,3

The finished run's data dir is copied once per seed (the original is not touched, and no seed
sees the models an earlier seed promoted); on each copy the whole train-and-evaluate job (everything downstream of the cleaned interactions) is materialized once per
seed at the run's cut-off, with every seed set to it: torch (``ComputeResource.seed``: two-tower,
PRS, the sequence ranker), ALS's ``random_state``, LightGBM's ``seed`` (its bagging and its held-out
hash slices) and OutRank's negative and control sampling. Per seed, from the run's own tables: the
final stage's test NDCG@10 with its bootstrap interval, what the guard chose on valid and why
(``models.final_stage``), the best channel on test and the final stage's paired difference to it.
Then the spread over seeds: mean, standard deviation and range of each stage's test NDCG@10.
Results go to bench/results_seed_spread.md (``--out``), newest first.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import dagster as dg
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestration.definitions import all_assets, all_checks, build_resources  # noqa: E402
from resources.compute import ComputeResource  # noqa: E402
from resources.model_store import ModelStore  # noqa: E402
from resources.warehouse import Warehouse  # noqa: E402

CHANNELS = ("pop", "itemcf", "swing", "als", "ease", "two_tower", "content", "tgh", "pi2i_index", "pi2i")
TRAIN_JOB = dg.AssetSelection.assets("interactions").downstream(include_self=False)


def _cutoff(data_dir: Path) -> str:
    for log in sorted((data_dir / "logs").glob("run-*.log"), reverse=True):
        if m := re.search(r"cut-offs? \[?'?(\d{4}-\d{2}-\d{2})", log.read_text(errors="replace")):
            return m[1]
    raise SystemExit(f"{data_dir}/logs: no 'cut-off' line in a run log; pass --cutoff")


def run_config(seed: int) -> dict:
    return {
        "ops": {
            "candidates_als": {"config": {"params": {"random_state": seed}}},
            "lgbm_ranker": {"config": {"params": {"seed": seed}}},
            "event_features": {"config": {"seed": seed, "control_seed": seed}},
        }
    }


def one_seed(data_dir: Path, cutoff: str, seed: int) -> dict:
    resources = {
        **build_resources(),
        "warehouse": Warehouse(data_dir=str(data_dir)),
        "model_store": ModelStore(data_dir=str(data_dir)),
        "compute": ComputeResource(seed=seed),
    }
    start = time.monotonic()
    result = dg.materialize(
        [*all_assets, *all_checks],
        selection=TRAIN_JOB,
        partition_key=cutoff,
        resources=resources,
        instance=dg.DagsterInstance.ephemeral(),
        run_config=run_config(seed),
    )
    wall = time.monotonic() - start
    if not result.success:
        raise RuntimeError(f"seed {seed}: the train-and-evaluate job failed")
    run_id = result.run_id
    warehouse = resources["warehouse"]
    metrics = warehouse.query(
        "SELECT stage, value, ci_low, ci_high, n_users FROM eval.metrics WHERE run_id = $run AND fold = 'test' "
        "AND cohort = 'all' AND metric = 'ndcg' AND k = 10",
        {"run": run_id},
    )
    paired = warehouse.query("SELECT stage, versus, mean_diff, ci_low, ci_high, p_holm, decided_95 FROM eval.last_paired_test")
    decision = warehouse.query(
        "SELECT stage, n_users, valid_ndcg10, candidates FROM models.final_stage ORDER BY decided_at DESC LIMIT 1"
    ).row(0, named=True)
    return {"seed": seed, "wall_s": wall, "metrics": metrics, "paired": paired, "decision": decision}


def _why(decision: dict) -> str:
    table = json.loads(decision["candidates"])
    top, chosen = table[0], decision["stage"]
    if chosen != top["stage"]:
        return f"default kept; best {top['stage']} {top['margin_vs_default']:+.4f} ± {top['se_vs_default']:.4f}"
    return "best" if top.get("margin_vs_default") in (None, 0.0) else f"ahead of the default by {top['margin_vs_default']:+.4f}"


def render(rows: list[dict], args, head: str, cutoff: str) -> str:
    lines = [
        f"### {datetime.now():%Y-%m-%d %H:%M}: {args.data_dir}, cut-off {cutoff} (HEAD {head})",
        "",
        f"Machine: {platform.machine()}, 2 cores, Python {platform.python_version()}; `python bench/bench_seed_spread.py "
        f"--data-dir {args.data_dir} --seeds {args.seeds}`. Test fold, all users, NDCG@10 [bootstrap 95% interval].",
        "",
        "| seed | final | guard's choice (valid users, why) | best channel on test | final − best channel (paired, Holm) | wall s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r["metrics"]
        final = m.filter(pl.col("stage") == "final").row(0, named=True)
        channels = m.filter(pl.col("stage").is_in(CHANNELS)).sort("value", descending=True)
        best = channels.row(0, named=True)
        p = r["paired"].filter((pl.col("stage") == "final") & (pl.col("versus") == best["stage"]))
        vs = "n/a"
        if p.height:
            q = p.row(0, named=True)
            decided = "decided" if q["decided_95"] else "not decided"
            vs = f"{q['mean_diff']:+.4f} [{q['ci_low']:+.4f}, {q['ci_high']:+.4f}], p_holm {q['p_holm']:.3g}, {decided}"
        d = r["decision"]
        lines.append(
            f"| {r['seed']} | {final['value']:.4f} [{final['ci_low']:.4f}, {final['ci_high']:.4f}] | {d['stage']} ({d['n_users']}, {_why(d)}) | "
            f"{best['stage']} {best['value']:.4f} | {vs} | {r['wall_s']:.0f} |"
        )
    long = pl.concat([r["metrics"].select("stage", "value").with_columns(pl.lit(r["seed"]).alias("seed")) for r in rows])
    spread = (
        long.group_by("stage")
        .agg(
            pl.col("value").mean().alias("mean"),
            pl.col("value").std().alias("sd"),
            pl.col("value").min().alias("min"),
            pl.col("value").max().alias("max"),
        )
        .sort("mean", descending=True)
    )
    lines += ["", f"Spread over {len(rows)} seeds (test NDCG@10):", "", "| stage | mean | sd | min | max |", "|---|---|---|---|---|"]
    for s in spread.iter_rows(named=True):
        lines.append(f"| {s['stage']} | {s['mean']:.4f} | {s['sd'] or 0:.4f} | {s['min']:.4f} | {s['max']:.4f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True, help="a finished run's RECDAG_DATA_DIR (copied, not modified)")
    ap.add_argument("--seeds", default="0,1,2,3")
    ap.add_argument("--cutoff", default=None, help="the cut-off partition (default: the one in the run's log)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_seed_spread.md"))
    args = ap.parse_args()
    source = Path(args.data_dir).resolve()
    cutoff = args.cutoff or _cutoff(source)
    rows = []
    with tempfile.TemporaryDirectory(prefix="recdag-seeds-") as tmp:
        for seed in [int(s) for s in args.seeds.split(",")]:
            # a fresh copy per seed: every seed retrains from the same state (its promotion gate compares with the
            # same promoted models), not from the models an earlier seed promoted
            data = Path(tmp) / f"seed{seed}"
            shutil.copytree(source, data, ignore=shutil.ignore_patterns("*.lock"))
            print(f"[bench_seed_spread] seed {seed} ...", flush=True)
            rows.append(one_seed(data, cutoff, seed))
            shutil.rmtree(data)
            print(f"[bench_seed_spread] seed {seed}: {rows[-1]['decision']['stage']} in {rows[-1]['wall_s']:.0f} s", flush=True)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    out = Path(args.out)
    title = "## Run-to-run spread over seeds (bench/bench_seed_spread.py)\n\n"
    old = out.read_text().removeprefix(title) if out.exists() else ""
    text = render(rows, args, head, cutoff)
    out.write_text(title + text + ("\n" + old if old else ""))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
