"""One pipeline step alone, at two revisions of the code, side by side on the same warehouse.

    python bench/bench_scale.py --sizes 1000000 --keep /tmp/scale        # a finished pipeline to rerun steps on
    python bench/bench_step.py --keep /tmp/scale/1000000 --assets sequence_ranker,lgbm_ranker --revs c9be10d,WORKTREE

Each (asset, revision) is one ``dagster asset materialize`` of that asset alone, in a fresh subprocess, on the kept
data dir (``RECDAG_DATA_DIR``, its Dagster home and the cut-off partition the run used). A revision other than
``WORKTREE`` (the files as they are now) is checked out into a temporary ``git worktree`` and put first on the
child's path, so both sides run in this environment with only the repository's code differing. A side may add
environment variables after a ``+``: ``--revs HEAD,HEAD+RECDAG_DUCKDB_MEMORY_LIMIT=2GB`` compares a setting on the
same code. Rounds alternate
the revisions (``--repeat``). Wall s is the child's; peak RSS is its ru_maxrss (``os.wait4``): the interpreter,
Dagster and the libraries included, as a user's step process would hold. The step rewrites its own tables in the
kept warehouse (and adds a model version), which the next round reads exactly as the first did: its inputs are
the upstream tables, untouched. The 1-minute load average is read before and after each run (a shared machine).
Results go to bench/results_step.md (``--out``), newest run first, the older runs kept below.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKTREE = "WORKTREE"


def _partition(keep: Path) -> str:
    """The cut-off partition the kept run materialized (the first date after 'cut-off' in its run log)."""
    for log in sorted((keep / "data" / "logs").glob("run-*.log")):
        if m := re.search(r"cut-offs? \[?'?(\d{4}-\d{2}-\d{2})", log.read_text(errors="replace")):
            return m[1]
    raise SystemExit(f"{keep}/data/logs: no 'cut-off' line; pass --partition")


def _checkout(rev: str, scratch: Path) -> Path:
    if rev == WORKTREE:
        return ROOT
    path = scratch / rev
    subprocess.run(["git", "worktree", "add", "--detach", "--force", str(path), rev], cwd=ROOT, check=True, capture_output=True)
    return path


def _side(spec: str) -> tuple[str, dict[str, str]]:
    """'REV' or 'REV+NAME=VALUE+...' -> (REV, {NAME: VALUE})."""
    rev, *pairs = spec.split("+")
    return rev, dict(p.split("=", 1) for p in pairs)


def run_step(code: Path, keep: Path, asset: str, partition: str, extra_env: dict[str, str]) -> dict:
    env = {
        **os.environ,
        **extra_env,
        "RECDAG_DATA_DIR": str(keep / "data"),
        "DAGSTER_HOME": str(keep / "home"),
        "PYTHONPATH": os.pathsep.join([str(code), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "GX_ANALYTICS_ENABLED": "false",
        "TQDM_DISABLE": "1",
    }
    if "RECDAG_DATASET" not in os.environ:
        raise SystemExit("set RECDAG_DATASET to the kept run's dataset (e.g. synthetic:1000000): it fixes the partitions")
    cmd = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "orchestration.definitions", "--select", asset]
    cmd += ["--partition", partition]
    load = os.getloadavg()[0]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=code, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()  # to EOF; the child is then reaped here, not by Popen, for its rusage
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    ok = proc.returncode == 0 and "RUN_SUCCESS" in out
    if not ok:
        print(out[-4000:], file=sys.stderr)
    return {"ok": ok, "wall_s": wall, "peak_gib": usage.ru_maxrss / 2**20, "load": (load, os.getloadavg()[0])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--keep", type=Path, required=True, help="a size's folder from bench_scale.py --keep (data/ and home/)")
    ap.add_argument("--assets", required=True)
    ap.add_argument("--revs", default=f"HEAD,{WORKTREE}", help="comma-separated git revisions; WORKTREE = the files as they are")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--partition")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results_step.md")
    args = ap.parse_args()
    partition = args.partition or _partition(args.keep)
    revs = [r for r in args.revs.split(",") if r]
    rows = []
    with tempfile.TemporaryDirectory(prefix="recdag-step-") as scratch:
        trees = {name: _checkout(name, Path(scratch)) for name in dict.fromkeys(_side(spec)[0] for spec in revs)}
        try:
            for asset in [a for a in args.assets.split(",") if a]:
                for r in range(args.repeat):
                    for spec in revs if r % 2 == 0 else revs[::-1]:
                        rev, extra = _side(spec)
                        got = run_step(trees[rev], args.keep, asset, partition, extra)
                        label = (
                            rev
                            if rev == WORKTREE
                            else subprocess.run(
                                ["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True
                            ).stdout.strip()
                        )
                        label += "".join(f" {k}={v}" for k, v in extra.items())
                        rows.append((asset, r + 1, label, got))
                        print(f"{asset} round {r + 1} {label}: {got}", flush=True)
        finally:
            for path in trees.values():
                if path != ROOT:
                    subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, capture_output=True)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    lines = [
        f"### {datetime.now():%Y-%m-%d %H:%M}: {os.environ['RECDAG_DATASET']}, cut-off {partition} (HEAD {head})",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"`python bench/bench_step.py --keep {args.keep} --assets {args.assets} --revs {args.revs} --repeat {args.repeat}`.",
        "",
        "| asset | round | code | ok | wall s | peak RSS GiB | load avg before / after |",
        "|---|---|---|---|---|---|---|",
    ]
    for asset, r, label, got in rows:
        lines.append(
            f"| {asset} | {r} | {label} | {'yes' if got['ok'] else 'FAILED'} | {got['wall_s']:.1f} | {got['peak_gib']:.2f} | "
            f"{got['load'][0]:.1f} / {got['load'][1]:.1f} |"
        )
    title = "## One step alone, two revisions side by side (bench/bench_step.py)\n\n"
    old = args.out.read_text().removeprefix(title) if args.out.exists() else ""
    args.out.write_text(title + "\n".join(lines) + "\n\n" + old)
    print("\n".join(lines))
    return 0 if all(got["ok"] for *_, got in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
