"""Time `make run`'s pipeline on MovieLens-100K from an empty data dir, with peak RSS.

    python bench/bench_make_run.py     # writes bench/results_make_run.md

Runs `python -m orchestration.run` in a fresh subprocess with a temporary RECDAG_DATA_DIR and
DAGSTER_HOME (the ML-100K files are copied from the project's cache when present, so the timing
excludes the one-time download), and records wall time per job and the child's peak RSS.
"""

from __future__ import annotations

import os
import platform
import resource
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        data, home = Path(tmp) / "data", Path(tmp) / "home"
        home.mkdir()
        shutil.copy(ROOT / "orchestration" / "dagster.yaml", home / "dagster.yaml")
        cached = ROOT / "data" / "sources" / "ml-100k"
        if cached.exists():
            shutil.copytree(cached, data / "sources" / "ml-100k")
        env = {**os.environ, "RECDAG_DATA_DIR": str(data), "DAGSTER_HOME": str(home), "RECDAG_DATASET": "movielens-100k"}
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "orchestration.run"], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out, _ = proc.communicate()
        wall = time.monotonic() - started
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    jobs = re.findall(r"\[recdag\] job (\S+) (\S+) in ([0-9.]+)s", out)
    lines = [
        "## make run on MovieLens-100K (whole default pipeline)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"`python bench/bench_make_run.py` (exit {proc.returncode}). Download excluded (cached files copied in).",
        "",
        "| job | status | wall s |",
        "|---|---|---|",
        *[f"| {name} | {status} | {secs} |" for name, status, secs in jobs],
        f"| **total (process)** | | **{wall:.1f}** |",
        "",
        f"Peak RSS of the pipeline process: {peak_mib:.0f} MiB.",
    ]
    (ROOT / "bench" / "results_make_run.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
