"""Does the cascade beat its best channel? The final stage against every channel, per protocol.

    python bench/bench_final_stage.py                       # every scenario, writes bench/results_final_stage.md
    python bench/bench_final_stage.py --scenarios files,llo
    python bench/bench_final_stage.py --scenarios synthetic --synthetic synthetic:1000000

Scenarios (each `python -m orchestration.run` in a fresh subprocess on a fresh data dir and Dagster
home, ML-100K copied from data/sources when cached):

- ``files``: a random 8:1:1 per-user split of ML-100K made here (seed ``--split-seed``; each user's
  ratings shuffled, the first 80% train, the next 10% valid, the rest test, as RecBole's
  ``RS: [0.8, 0.1, 0.1]`` with ``group_by: user``), as RecBole atomic files, ``RECDAG_SPLIT=files:<dir>``.
- ``llo``: ML-100K, leave-last-out (``RECDAG_SPLIT=leave_last_out``).
- ``synthetic``: ``--synthetic`` (default ``synthetic:200000``), default temporal protocol.
- ``temporal``: ML-100K, default temporal protocol (newest cut-off).
- ``backtest``: ML-100K, ``--backtest 4``: the pooled headline and paired tests over 4 cut-offs.

Per scenario, from the warehouse the run wrote (test fold, all users): NDCG@10 with its bootstrap
95% interval of the final stage, of EASE and of the best channel on test, the paired difference
final − EASE and final − best channel (bootstrap interval, Holm-corrected p across every stage, as
``eval.last_paired_test`` / ``eval.pooled_paired_test`` hold it), whether the final stage's interval lies
wholly above every channel's ("separated"), what the guard chose on valid (``models.final_stage``) and
the wall time. Test is only read here, after every choice was made on
valid inside the run.
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
import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CHANNELS = ("pop", "itemcf", "swing", "als", "ease", "two_tower", "content", "tgh", "pi2i_index", "pi2i")
SCENARIOS = ("files", "llo", "synthetic", "temporal", "backtest")


def random_split(inter: Path, out: Path, seed: int) -> Path:
    """ML-100K's RecBole .inter as a random 8:1:1 per-user split in ``out/ml-100k.{train,valid,test}.inter``."""
    frame = pl.read_csv(inter, separator="\t")
    header = "\t".join(frame.columns)
    rng = np.random.default_rng(seed)
    frame = frame.with_columns(pl.Series("_r", rng.random(frame.height)))
    ranked = frame.sort("_r").with_columns(
        pl.int_range(pl.len()).over(frame.columns[0]).alias("_i"), pl.len().over(frame.columns[0]).alias("_n")
    )
    n_train = (pl.col("_n") * 0.8).ceil()
    n_valid = (pl.col("_n") * 0.9).ceil()
    fold = (
        pl.when(pl.col("_i") < n_train).then(pl.lit("train")).when(pl.col("_i") < n_valid).then(pl.lit("valid")).otherwise(pl.lit("test"))
    )
    ranked = ranked.with_columns(fold.alias("_fold"))
    out.mkdir(parents=True, exist_ok=True)
    for name in ("train", "valid", "test"):
        part = ranked.filter(pl.col("_fold") == name).sort("_r").drop("_r", "_i", "_n", "_fold")
        part.write_csv(out / f"ml-100k.{name}.inter", separator="\t", include_header=False)
        body = (out / f"ml-100k.{name}.inter").read_text()
        (out / f"ml-100k.{name}.inter").write_text(header + "\n" + body)
    return out


def _run(scenario: str, tmp: Path, split_seed: int, synthetic: str = "synthetic:200000") -> dict:
    data, home = tmp / scenario / "data", tmp / scenario / "home"
    home.mkdir(parents=True)
    shutil.copy(ROOT / "orchestration" / "dagster.yaml", home / "dagster.yaml")
    cached = ROOT / "data" / "sources" / "ml-100k"
    if cached.exists():
        shutil.copytree(cached, data / "sources" / "ml-100k")
    env = {**os.environ, "RECDAG_DATA_DIR": str(data), "DAGSTER_HOME": str(home), "RECDAG_DATASET": "movielens-100k", "TQDM_DISABLE": "1"}
    env.pop("RECDAG_SPLIT", None)
    args = [sys.executable, "-m", "orchestration.run", "--plain"]
    if scenario == "files":
        env["RECDAG_SPLIT"] = f"files:{random_split(cached / 'ml-100k.inter', tmp / 'split' / 'ml-100k', split_seed)}"
    elif scenario == "llo":
        env["RECDAG_SPLIT"] = "leave_last_out"
    elif scenario == "synthetic":
        env["RECDAG_DATASET"] = synthetic
    elif scenario == "backtest":
        args.append("--backtest")
        args.append("4")
    start = time.monotonic()
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{scenario}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    label = f"{scenario} ({synthetic.split(':', 1)[1]})" if scenario == "synthetic" else scenario
    return {"scenario": label, "wall_s": wall, **_read(data / "warehouse.duckdb", pooled=scenario == "backtest")}


def _read(path: Path, pooled: bool) -> dict:
    with duckdb.connect(str(path), read_only=True) as con:
        if pooled:
            metrics = con.execute(
                "SELECT stage, value, ci_low, ci_high, n_users FROM eval.metrics WHERE cutoff = 'pooled' AND metric = 'ndcg' AND k = 10 "
                "AND cohort = 'all' AND run_id = (SELECT run_id FROM eval.metrics WHERE cutoff = 'pooled' ORDER BY evaluated_at DESC LIMIT 1)"
            ).pl()
            paired = con.execute("SELECT * FROM eval.pooled_paired_test").pl()
        else:
            metrics = con.execute(
                "SELECT stage, value, ci_low, ci_high, n_users FROM eval.metrics WHERE fold = 'test' AND metric = 'ndcg' AND k = 10 "
                "AND cohort = 'all' AND cutoff <> 'pooled' AND run_id = (SELECT run_id FROM eval.last_paired_test LIMIT 1)"
            ).pl()
            paired = con.execute("SELECT * FROM eval.last_paired_test").pl()
        decisions = con.execute(
            "SELECT cutoff, stage, kind, valid_ndcg10, best_channel, margin, n_users FROM models.final_stage ORDER BY decided_at"
        ).pl()
        # each ranker's promotion-gate verdict, in training order (one per ranker per cut-off)
        gates = con.execute(
            "SELECT name, gate_passed, gate_details->>'reason' AS reason FROM models.registry "
            "WHERE name IN ('lgbm_ranker', 'sequence_ranker') ORDER BY trained_at"
        ).pl()
    return {"metrics": metrics, "paired": paired, "decisions": decisions, "gates": gates}


def _cell(metrics: pl.DataFrame, stage: str) -> str:
    row = metrics.filter(pl.col("stage") == stage)
    if row.is_empty():
        return "n/a"
    r = row.row(0, named=True)
    return f"{r['value']:.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}]"


def _vs(paired: pl.DataFrame, versus: str) -> str:
    row = paired.filter((pl.col("stage") == "final") & (pl.col("versus") == versus))
    if row.is_empty():
        return "n/a"
    r = row.row(0, named=True)
    return f"{r['mean_diff']:+.4f} [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}], p_holm {r['p_holm']:.3g}, {'decided' if r['decided_95'] else 'not decided'}"


def separation(metrics: pl.DataFrame) -> str:
    """Whether the final stage's 95% interval lies wholly above every channel's: 'separated', or the
    channels whose upper bound reaches the final's lower bound."""
    final = metrics.filter(pl.col("stage") == "final")
    channels = metrics.filter(pl.col("stage").is_in(CHANNELS) & pl.col("ci_high").is_not_null())
    if final.is_empty() or final["ci_low"][0] is None or channels.is_empty():
        return "n/a"
    low = final["ci_low"][0]
    overlap = channels.filter(pl.col("ci_high") >= low).sort("ci_high", descending=True)
    if overlap.is_empty():
        return f"separated (final low {low:.4f} > every channel's high, max {channels['ci_high'].max():.4f})"
    return "overlaps " + ", ".join(f"{r['stage']} (high {r['ci_high']:.4f} ≥ final low {low:.4f})" for r in overlap.iter_rows(named=True))


def render(results: list[dict], split_seed: int) -> str:
    lines = [
        "## The final stage against every channel (bench/bench_final_stage.py)",
        "",
        f"Each scenario is one `python -m orchestration.run` on a fresh data dir; test fold, all users, NDCG@10 with bootstrap 95% "
        f"intervals; paired differences with Holm correction across every stage (the run's own tables). Machine: {platform.machine()}, "
        f"{os.cpu_count()} cores (shared); files split seed {split_seed}.",
        "",
        "| scenario | final | guard's choice on valid (held-out users) | EASE | best channel on test | final / EASE | final − EASE | final − best channel | intervals vs every channel | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        m = res["metrics"]
        channels = m.filter(pl.col("stage").is_in(CHANNELS)).sort("value", descending=True)
        best = channels["stage"][0] if channels.height else None
        final = m.filter(pl.col("stage") == "final")["value"]
        ease = m.filter(pl.col("stage") == "ease")["value"]
        ratio = f"{final[0] / ease[0]:.3f}" if final.len() and ease.len() and ease[0] else "n/a"
        d = res["decisions"]
        chosen = ", ".join(
            f"{r['stage']} ({r['n_users']} users)" for r in d.tail(4 if res["scenario"] == "backtest" else 1).iter_rows(named=True)
        )
        lines.append(
            f"| {res['scenario']} | {_cell(m, 'final')} | {chosen} | {_cell(m, 'ease')} | {best}: {_cell(m, best) if best else 'n/a'} | "
            f"{ratio} | {_vs(res['paired'], 'ease')} | {_vs(res['paired'], best) if best else 'n/a'} | {separation(m)} | {res['wall_s']:.0f} |"
        )
    lines += ["", "Promotion-gate verdicts per scenario (each ranker, in training order; a backtest has one per cut-off):", ""]
    for res in results:
        for r in res["gates"].iter_rows(named=True):
            lines.append(f"- {res['scenario']}: {r['name']} {'passed' if r['gate_passed'] else 'FAILED'}: {r['reason']}")
    lines += ["", "Every stage (NDCG@10 [95% interval]) per scenario:", ""]
    for res in results:
        m = res["metrics"].sort("value", descending=True)
        users = res["metrics"].filter(pl.col("stage") == "final")["n_users"]
        lines.append(
            f"- **{res['scenario']}** ({users[0] if users.len() else 'n/a'} test users): "
            + "; ".join(f"{r['stage']} {r['value']:.4f}" for r in m.iter_rows(named=True))
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--split-seed", type=int, default=2026)
    ap.add_argument("--synthetic", default="synthetic:200000", help="the synthetic scenario's dataset (synthetic:<interactions>)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_final_stage.md"))
    args = ap.parse_args()
    results, failed = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for scenario in args.scenarios.split(","):
            print(f"[bench_final_stage] {scenario} ...", flush=True)
            try:
                results.append(_run(scenario, Path(tmp), args.split_seed, args.synthetic))
            except RuntimeError as exc:  # one failed scenario must not lose the others' results
                failed.append(scenario)
                log = Path(args.out).with_suffix(f".{scenario}.failed.log")
                log.write_text(str(exc))
                shutil.copytree(Path(tmp) / scenario / "data" / "logs", log.with_suffix(".logs"), dirs_exist_ok=True)
                print(f"[bench_final_stage] {scenario} FAILED: output in {log}, its run logs in {log.with_suffix('.logs')}", flush=True)
                continue
            print(f"[bench_final_stage] {scenario} done in {results[-1]['wall_s']:.0f} s", flush=True)
    text = render(results, args.split_seed) + (f"\nFailed scenarios (no row): {', '.join(failed)}.\n" if failed else "")
    Path(args.out).write_text(text)
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
