"""Leave-last-out before and after the canonical event order (ts, seq), side by side.

    python bench/bench_tie_order.py --before ddca900 [--datasets ml-100k,synthetic:100000]

For each dataset the same pipeline (`python -m orchestration.run`, RECDAG_SPLIT=leave_last_out) runs
four times: on the commit before the fix (`--before`, checked out with `git worktree` into a temporary
folder) and on this working tree, each on the log as shipped and on the same log with user and item
ids relabelled by a random permutation (row order kept). Before the fix, same-second ties were broken
by (user_id, item_id), so relabelling moved the metrics; after it, ties follow the source order and
the deterministic stages must not move at all. Writes bench/results_tie_order.md with NDCG@10 per
stage for the four runs, wall time and peak RSS.
"""

from __future__ import annotations

import argparse
import json
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
SQL = """
SELECT stage, value AS ndcg10, ci_low, ci_high, n_users FROM eval.metrics
WHERE fold = 'test' AND metric = 'ndcg' AND k = 10 AND cohort = 'all' AND ci_low IS NOT NULL {pooled}
"""


def headline(warehouse: Path) -> pl.DataFrame:
    """NDCG@10 per stage of the run's own evaluation (not evaluation_summary's pooled rows, where they exist)."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        columns = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'metrics'").fetchall()}
        pooled = "AND coalesce(cutoff, '') <> 'pooled'" if "cutoff" in columns else ""
        return con.execute(SQL.format(pooled=pooled)).pl()


def ml100k_folder(cache: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    from resources.datasets import fetch_movielens_100k

    return fetch_movielens_100k(cache / "ml-100k", log=lambda *_: None)


def relabelled_recbole(src: Path, dst: Path, seed: int = 7) -> Path:
    """A copy of a RecBole atomic folder (.inter/.item/.user) with user and item ids permuted."""
    dst.mkdir(parents=True, exist_ok=True)
    name = src.name
    inter = pl.read_csv(src / f"{name}.inter", separator="\t", infer_schema=False)
    users = inter["user_id:token"].unique().sort()
    items = pl.read_csv(src / f"{name}.item", separator="\t", infer_schema=False, quote_char=None)["item_id:token"].unique().sort()
    rng = np.random.default_rng(seed)
    umap = dict(zip(users.to_list(), [str(v) for v in rng.permutation(np.arange(1, users.len() + 1))]))
    imap = dict(zip(items.to_list(), [str(v) for v in rng.permutation(np.arange(1, items.len() + 1))]))
    inter.with_columns(pl.col("user_id:token").replace_strict(umap), pl.col("item_id:token").replace_strict(imap)).write_csv(
        dst / f"{name}.inter", separator="\t", quote_style="never"
    )
    for ext, col, mapping in ((".item", "item_id:token", imap), (".user", "user_id:token", umap)):
        frame = pl.read_csv(src / f"{name}{ext}", separator="\t", infer_schema=False, quote_char=None)
        frame.with_columns(pl.col(col).replace_strict(mapping, default=pl.col(col))).write_csv(
            dst / f"{name}{ext}", separator="\t", quote_style="never"
        )
    return dst


def relabelled_taobao(dataset: str, dst: Path, seed: int = 7) -> Path:
    """The synthetic log rendered as a Taobao CSV, ids permuted (row order kept)."""
    sys.path.insert(0, str(ROOT))
    from recsys.synthetic import SyntheticConfig, SyntheticWorld, generate_day, render_lines

    n = int(dataset.split(":")[1])
    config = SyntheticConfig(n_interactions=n)
    world = SyntheticWorld.build(config)
    days = [config.start + __import__("datetime").timedelta(days=d) for d in range(config.n_days)]
    lines = pl.concat([render_lines(world, generate_day(world, day)).to_frame() for day in days])
    cols = lines["raw_line"].str.split_exact(",", 5).struct.rename_fields(["u", "i", "c", "b", "t", "s"]).struct.unnest()
    rng = np.random.default_rng(seed)
    out = []
    for shuffled in (False, True):
        frame = cols
        if shuffled:
            uu, ii = frame["u"].unique().sort(), frame["i"].unique().sort()
            umap = dict(zip(uu.to_list(), [str(v) for v in rng.permutation(np.arange(1, uu.len() + 1))]))
            imap = dict(zip(ii.to_list(), [str(v) for v in rng.permutation(np.arange(1, ii.len() + 1))]))
            frame = frame.with_columns(pl.col("u").replace_strict(umap), pl.col("i").replace_strict(imap))
        path = dst / ("relabelled.csv" if shuffled else "original.csv")
        dst.mkdir(parents=True, exist_ok=True)
        frame.select("u", "i", "c", "b", "t").write_csv(path, include_header=False)
        out.append(path)
    return dst


def run(code: Path, dataset: str, work: Path) -> dict:
    data, home = work / "data", work / "home"
    if (work / "result.json").exists():  # --work of an earlier invocation: reuse the finished run
        done = json.loads((work / "result.json").read_text())
        return {"rows": headline(data / "warehouse.duckdb"), "wall": done["wall"], "rss_mib": done["rss_mib"]}
    home.mkdir(parents=True)
    shutil.copy(ROOT / "orchestration" / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "RECDAG_DATA_DIR": str(data),
        "DAGSTER_HOME": str(home),
        "RECDAG_DATASET": dataset,
        "RECDAG_SPLIT": "leave_last_out",
        "PYTHONPATH": str(code),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "GX_ANALYTICS_ENABLED": "false",
        "TQDM_DISABLE": "1",
    }
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestration.run"], cwd=code, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        (work / "run.log").write_bytes(out)
        raise RuntimeError(f"pipeline failed on {dataset} at {code}: see {work / 'run.log'}")
    (work / "result.json").write_text(json.dumps({"wall": wall, "rss_mib": usage.ru_maxrss / 1024}))
    return {"rows": headline(data / "warehouse.duckdb"), "wall": wall, "rss_mib": usage.ru_maxrss / 1024}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--before", default="ddca900", help="commit before the tie fix (default: the one right before it)")
    ap.add_argument("--datasets", default="ml-100k,synthetic:100000")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_tie_order.md"))
    ap.add_argument("--work", default="", help="working folder; finished runs found there are reused (resume)")
    args = ap.parse_args()
    tmp = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="recdag-ties-"))
    before = tmp / "before"
    if not before.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(before), args.before], cwd=ROOT, check=True, capture_output=True)
    lines = [
        "## Leave-last-out before and after the canonical event order (ts, seq)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores; `python bench/bench_tie_order.py --before {args.before}`. "
        "Before: commit "
        f"`{args.before}` (same-second ties broken by user and item id). After: this tree (ties in source order, (ts, seq)). "
        "Each on the log as shipped and with user and item ids relabelled by a random permutation, rows in the same order. "
        "NDCG@10 on the test fold (full ranking), bootstrap 95% interval over users.",
        "",
    ]
    try:
        for spec in args.datasets.split(","):
            if spec == "ml-100k":
                folder = ml100k_folder(tmp / "sources")
                variants = {
                    "as shipped": f"movielens:{folder}",
                    "relabelled": f"movielens:{relabelled_recbole(folder, tmp / 'perm' / 'ml-100k')}",
                }
            else:
                csvs = relabelled_taobao(spec, tmp / "synthetic")
                variants = {"as shipped": f"taobao:{csvs / 'original.csv'}", "relabelled": f"taobao:{csvs / 'relabelled.csv'}"}
            results = {}
            for code_name, code in (("before", before), ("after", ROOT)):
                for variant, dataset in variants.items():
                    results[(code_name, variant)] = run(code, dataset, tmp / "runs" / f"{spec.replace(':', '_')}-{code_name}-{variant[:3]}")
                    print(f"{spec} {code_name} {variant}: {results[(code_name, variant)]['wall']:.0f} s", flush=True)
            keys = list(results)
            table = None
            for key in keys:
                col = f"{key[0]}, {key[1]}"
                part = results[key]["rows"].select("stage", pl.col("ndcg10").round(4).alias(col))
                table = part if table is None else table.join(part, on="stage", how="full", coalesce=True)
            table = table.with_columns(
                (pl.col("before, relabelled") - pl.col("before, as shipped")).round(4).alias("Δ before"),
                (pl.col("after, relabelled") - pl.col("after, as shipped")).round(4).alias("Δ after"),
            ).sort("after, as shipped", descending=True, nulls_last=True)
            users = results[("after", "as shipped")]["rows"]["n_users"].max()
            lines += [f"### {spec} ({users} test users)", "", "| " + " | ".join(table.columns) + " |", "|" + "---|" * table.width]
            lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in table.iter_rows()]
            lines += [
                "",
                "Wall time / peak RSS: "
                + "; ".join(f"{k[0]} {k[1]} {v['wall']:.0f} s / {v['rss_mib']:.0f} MiB" for k, v in results.items()),
                "",
            ]
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT, capture_output=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
