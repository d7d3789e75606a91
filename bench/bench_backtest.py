"""`make backtest` on MovieLens-100K from an empty data dir: wall time, peak RSS and the pooled headline.

    python bench/bench_backtest.py [--n 4] [--dataset movielens-100k]   # writes bench/results_backtest.md

Runs `python -m orchestration.run --backtest N` in a fresh subprocess with a temporary RECDAG_DATA_DIR
and DAGSTER_HOME (the ML-100K files copied in when cached, so the download is excluded), and records
the wall time of every job, the child's peak RSS (os.wait4) and the summary the command printed.
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

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--dataset", default="movielens-100k")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results_backtest.md"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data, home = Path(tmp) / "data", Path(tmp) / "home"
        home.mkdir()
        shutil.copy(ROOT / "orchestration" / "dagster.yaml", home / "dagster.yaml")
        for cached in (ROOT / "data" / "sources" / "ml-100k", Path(os.environ.get("RECDAG_ML100K_CACHE", "/nonexistent"))):
            if cached.exists():
                shutil.copytree(cached, data / "sources" / "ml-100k")
                break
        env = {**os.environ, "RECDAG_DATA_DIR": str(data), "DAGSTER_HOME": str(home), "RECDAG_DATASET": args.dataset}
        env.pop("RECDAG_SPLIT", None)
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestration.run", "--backtest", str(args.n), "--plain"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
    jobs = re.findall(r"^(\S+): (.*?) \(run ", out, flags=re.M)
    times = re.findall(r"^(\S+) (succeeded|FAILED) in ([0-9.]+)s", out, flags=re.M)
    summary = out[out.index("Backtest pooled") :] if "Backtest pooled" in out else "(no pooled summary: the run failed)"
    lines = [
        f"## make backtest N={args.n} on {args.dataset}",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"`python bench/bench_backtest.py --n {args.n}`. Download excluded. Exit {os.waitstatus_to_exitcode(status)}, "
        f"**{wall:.0f} s** in all, peak RSS {usage.ru_maxrss / 1024:.0f} MiB.",
        "",
        "| run | scope | wall s |",
        "|---|---|---|",
        *[f"| {name} | {scope} | {t[2]} |" for (name, scope), t in zip(jobs, times)],
        "",
        "```",
        summary.strip(),
        "```",
        "",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
