"""Time `make run`'s pipeline on MovieLens-100K from an empty data dir, with peak RSS and the
headline evaluation it produced, once per split protocol.

    python bench/bench_make_run.py                      # temporal (the default) and leave_last_out
    python bench/bench_make_run.py --splits temporal    # writes bench/results_make_run.md
    python bench/bench_make_run.py --dataset synthetic:200000 --splits temporal --out bench/results_make_run_synthetic.md

Each protocol runs `python -m orchestration.run` in a fresh subprocess with a temporary
RECDAG_DATA_DIR and DAGSTER_HOME (the ML-100K files are copied from the project's cache when
present, so the timing excludes the one-time download), and records wall time per job, the
child's peak RSS (os.wait4) and, from the warehouse it wrote, NDCG@10 with its bootstrap 95%
interval per stage and the retrieval funnel (test fold).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent

HEADLINE_SQL = """
SELECT stage, round(value, 4) AS ndcg10, round(ci_low, 4) AS ci_low, round(ci_high, 4) AS ci_high, n_users
FROM eval.metrics
WHERE fold = 'test' AND metric = 'ndcg' AND k = 10 AND cohort = 'all' AND ci_low IS NOT NULL AND cutoff <> 'pooled'
ORDER BY value DESC
"""

FUNNEL_SQL = """
PIVOT (
    SELECT stage, metric || '@' || k AS mk, round(value, 4) AS value
    FROM eval.metrics
    WHERE fold = 'test' AND cohort = 'all' AND k IN (50, 100, 200) AND metric IN ('hit_rate', 'recall')
      AND ci_low IS NULL AND cutoff <> 'pooled'
) ON mk USING first(value) ORDER BY stage
"""


def table(con, sql: str) -> list[str]:
    cur = con.execute(sql)
    cols = [d[0] for d in cur.description]
    rows = cur.fetchall()
    return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)] + [
        "| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows
    ]


def run_once(split: str, dataset: str = "movielens-100k") -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        data, home = Path(tmp) / "data", Path(tmp) / "home"
        home.mkdir()
        shutil.copy(ROOT / "orchestration" / "dagster.yaml", home / "dagster.yaml")
        cached = ROOT / "data" / "sources" / "ml-100k"
        if cached.exists():
            shutil.copytree(cached, data / "sources" / "ml-100k")
        env = {**os.environ, "RECDAG_DATA_DIR": str(data), "DAGSTER_HOME": str(home), "RECDAG_DATASET": dataset, "RECDAG_SPLIT": split}
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestration.run"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
        jobs = re.findall(r"^(\w+) (succeeded|failed) in ([0-9.]+)s", out, flags=re.MULTILINE)  # make run's job lines
        lines = [
            f"### dataset = {dataset}, split = {split}",
            "",
            "| job | status | wall s |",
            "|---|---|---|",
            *[f"| {name} | {st} | {secs} |" for name, st, secs in jobs],
            f"| **total (process)** | exit {os.waitstatus_to_exitcode(status)} | **{wall:.1f}** |",
            "",
            f"Peak RSS of the pipeline process: {usage.ru_maxrss / 1024:.0f} MiB.",
            "",
        ]
        warehouse = data / "warehouse.duckdb"
        if warehouse.exists():
            with duckdb.connect(str(warehouse), read_only=True) as con:
                lines += ["NDCG@10 on the test fold, bootstrap 95% interval over users:", "", *table(con, HEADLINE_SQL), ""]
                lines += ["Retrieval funnel on the test fold (HitRate / Recall at K):", "", *table(con, FUNNEL_SQL), ""]
        return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--splits", default="temporal,leave_last_out")
    ap.add_argument("--dataset", default="movielens-100k")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_make_run.md"))
    args = ap.parse_args()
    lines = [
        f"## make run on {args.dataset} (whole default pipeline)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        "`python bench/bench_make_run.py`. Download excluded (cached files copied in). `make run` itself uses the "
        "temporal split; leave_last_out is the same command with `RECDAG_SPLIT=leave_last_out`.",
        "",
    ]
    for split in args.splits.split(","):
        lines += run_once(split, args.dataset)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
