"""How each asset's time and memory grow with the log: the whole pipeline on synthetic data at several sizes.

    python bench/bench_scale.py                                 # 0.2M, 2M, 10M interactions
    python bench/bench_scale.py --sizes 200000,2000000          # a subset
    python bench/bench_scale.py --assemble                      # only rebuild the table and plot from saved runs

Each size runs ``python -m orchestration.run --plain`` (exactly what ``make run`` runs) in a fresh subprocess, on a
snapshot of HEAD (a temporary ``git worktree``, so edits made while it runs are not picked up), with
``RECDAG_DATASET=synthetic:N``, an empty RECDAG_DATA_DIR and its own DAGSTER_HOME. While it runs, a sampler reads
the child's resident set size (``VmRSS`` of /proc/<pid>/status) every 0.2 s. Each finished step's console line ("ok
<step> <seconds>s") gives its wall time and, with the time the line arrived, its window; the step's peak RSS is the
highest sample inside that window. Steps run one after another in that process (``execute_in_process``), so a step's
peak is the process's peak while that step ran: it includes what earlier steps left in memory, and the "growth"
column (peak minus the RSS when the step started) isolates the step's own allocation. The process's peak RSS
(``os.wait4``) is recorded too.

Per asset, the growth exponent k of time ~ N^k is the least-squares slope of log(wall s) on log(N) over the
sizes that ran (steps under 0.5 s at every size are marked "fixed cost": their slope measures Dagster's
overhead, not the data). A run that fails or passes ``--timeout`` is recorded as such with the steps it
finished. Raw runs are kept as JSON in bench/scale_runs/ (git-ignored); the table goes to
bench/results_scale.md and the plot to bench/scale.png.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RUNS = BENCH / "scale_runs"
STEP_LINE = re.compile(r"^\s+(?P<status>ok|FAILED|skipped)\s+(?P<step>\S+)\s+(?P<secs>[0-9.]+)s")
JOB_LINE = re.compile(r"\[recdag\] job (\S+) (\S+) in ([0-9.]+)s")
FIXED_COST_S = 0.5
NOTES = BENCH / "scale_notes.md"


def rss_mib(pid: int) -> float | None:
    """Resident set size of ``pid`` in MiB, or None once it has exited."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


class RssSampler(threading.Thread):
    """(monotonic time, RSS MiB) of one process every ``every`` seconds until it exits."""

    def __init__(self, pid: int, every: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.every, self.samples = pid, every, []

    def run(self) -> None:
        while (value := rss_mib(self.pid)) is not None:
            self.samples.append((time.monotonic(), value))
            time.sleep(self.every)

    def window(self, start: float, end: float) -> tuple[float, float]:
        """(RSS when the window opened, peak RSS inside it); the nearest sample before ``start`` opens it."""
        before = [v for t, v in self.samples if t <= start]
        inside = [v for t, v in self.samples if start <= t <= end]
        opened = before[-1] if before else (inside[0] if inside else float("nan"))
        return opened, max(inside + [opened])


def snapshot(scratch: Path) -> tuple[Path, str]:
    """HEAD checked out in a temporary ``git worktree``: a run imports some modules only when a step first
    needs them, so a run of the working tree itself would mix in files edited while it ran (a 2M run once
    failed at its 25th minute on an import from a module edited under it). Uncommitted changes are not measured."""
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout
    if dirty.strip():
        print(f"[bench_scale] measuring commit {rev}; the working tree's uncommitted changes are not measured", flush=True)
    path = scratch / f"code-{rev}"
    subprocess.run(["git", "worktree", "add", "--detach", "--force", str(path), rev], cwd=ROOT, check=True, capture_output=True)
    return path, rev


def run_size(n: int, timeout_s: float, keep: Path | None = None, code: Path = ROOT, rev: str = "") -> dict:
    """One whole pipeline on synthetic:n with the code in ``code``; returns steps, jobs, exit status and peak RSS.

    With ``keep``, the data dir and Dagster home are made under ``keep/<n>`` and left there (to rerun
    single steps on the same warehouse); otherwise they are a temporary directory, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=f"recdag-scale-{n}-") as scratch:
        tmp = scratch if keep is None else keep / str(n)
        data, home = Path(tmp) / "data", Path(tmp) / "home"
        if keep is not None and Path(tmp).exists():
            raise SystemExit(f"--keep: {tmp} exists; remove it or choose another folder")
        home.mkdir(parents=True)
        shutil.copy(ROOT / "orchestration" / "dagster.yaml", home / "dagster.yaml")
        env = {**os.environ, "RECDAG_DATA_DIR": str(data), "DAGSTER_HOME": str(home), "RECDAG_DATASET": f"synthetic:{n}"}
        env["PYTHONPATH"] = os.pathsep.join([str(code), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestration.run", "--plain"],
            cwd=code,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        sampler = RssSampler(proc.pid)
        sampler.start()
        killer = threading.Timer(timeout_s, proc.kill)
        killer.start()
        steps, jobs, tail = [], [], []
        for line in proc.stdout:
            now = time.monotonic()
            tail = (tail + [line.rstrip()])[-40:]
            print(f"[{n}] {line.rstrip()}", flush=True)
            if m := STEP_LINE.match(line):
                secs = float(m["secs"])
                opened, peak = sampler.window(now - secs, now)
                steps.append({"step": m["step"], "status": m["status"], "wall_s": secs, "rss_start_mib": opened, "rss_peak_mib": peak})
            elif m := JOB_LINE.search(line):
                jobs.append({"job": m[1], "status": m[2], "wall_s": float(m[3])})
        _, status, usage = os.wait4(proc.pid, 0)
        killer.cancel()
        wall = time.monotonic() - started
        return {
            "n": n,
            "exit": os.waitstatus_to_exitcode(status),
            "timed_out": wall >= timeout_s,
            "wall_s": wall,
            "peak_rss_mib": usage.ru_maxrss / 1024,
            "steps": steps,
            "jobs": jobs,
            "tail": tail if os.waitstatus_to_exitcode(status) else [],
            "load_avg": os.getloadavg(),
            "when": time.strftime("%Y-%m-%d %H:%M"),
            "commit": rev,
        }


def exponent(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of log(y) on log(n); None with fewer than two sizes."""
    pts = [(math.log(n), math.log(max(y, 1e-3))) for n, y in points]
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx else None


def load_runs() -> list[dict]:
    return sorted((json.loads(p.read_text()) for p in RUNS.glob("synthetic_*.json")), key=lambda r: r["n"])


def per_step(runs: list[dict]) -> dict[str, dict[int, dict]]:
    """step -> size -> its record (a step that ran in several jobs of one run keeps the slowest)."""
    table: dict[str, dict[int, dict]] = {}
    for run in runs:
        for s in run["steps"]:
            cell = table.setdefault(s["step"], {})
            if run["n"] not in cell or s["wall_s"] > cell[run["n"]]["wall_s"]:
                cell[run["n"]] = s
    return table


def render(runs: list[dict]) -> list[str]:
    sizes = [r["n"] for r in runs]
    table = per_step(runs)
    lines = [
        "## Scaling: the whole pipeline on synthetic data (bench/bench_scale.py)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        "`python bench/bench_scale.py`. One `python -m orchestration.run` (what `make run` runs) per size, fresh data "
        "dir and Dagster home. Wall s per step from its console line; RSS from /proc sampled every 0.2 s (peak while "
        "the step ran, and its growth over the RSS at its start). k = slope of log(time) on log(N).",
        "",
        "| size | exit | wall s | process peak RSS GiB | load average at end | when |",
        "|---|---|---|---|---|---|",
    ]
    for r in runs:
        state = "timed out" if r.get("timed_out") else str(r["exit"])
        load = "/".join(f"{x:.1f}" for x in r["load_avg"])
        lines.append(f"| {r['n']:,} | {state} | {r['wall_s']:.0f} | {r['peak_rss_mib'] / 1024:.2f} | {load} | {r['when']} |")
    head = " | ".join(f"{n / 1e6:g}M s" for n in sizes)
    rss = " | ".join(f"{n / 1e6:g}M peak / growth GiB" for n in sizes)
    lines += ["", f"| step | {head} | k (time ~ N^k) | {rss} |", "|---|" + "---|" * (2 * len(sizes) + 1)]
    order = sorted(table, key=lambda s: -max(c["wall_s"] for c in table[s].values()))
    for step in order:
        cells = table[step]
        times = " | ".join(
            (f"{cells[n]['wall_s']:.1f}" + ("" if cells[n]["status"] == "ok" else f" ({cells[n]['status']})")) if n in cells else "—"
            for n in sizes
        )
        mems = " | ".join(
            f"{cells[n]['rss_peak_mib'] / 1024:.2f} / {(cells[n]['rss_peak_mib'] - cells[n]['rss_start_mib']) / 1024:+.2f}"
            if n in cells
            else "—"
            for n in sizes
        )
        ok = [(n, c["wall_s"]) for n, c in cells.items() if c["status"] == "ok"]
        if ok and all(t < FIXED_COST_S for _, t in ok):
            k = "fixed cost"
        else:
            k = exponent(ok)
            k = "—" if k is None else f"{k:.2f}"
        lines.append(f"| {step} | {times} | {k} | {mems} |")
    for r in runs:
        if r.get("timed_out") and r["steps"]:
            lines += [
                "",
                f"The {r['n']:,} run was stopped at the {r['wall_s']:.0f} s limit; its last finished step was `{r['steps'][-1]['step']}`.",
            ]
        if r.get("tail"):
            lines += ["", f"Last lines of the {r['n']:,} run (exit {r['exit']}):", "", "```", *r["tail"][-15:], "```"]
    lines += ["", "![time per step against N](scale.png)", ""]
    if NOTES.exists():  # the reading of these runs, kept by hand beside the generated table
        lines += [NOTES.read_text().strip(), ""]
    return lines


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = per_step(runs)
    fig, ax = plt.subplots(figsize=(9, 6))
    top = sorted(table, key=lambda s: -max(c["wall_s"] for c in table[s].values()))[:12]
    for step in top:
        pts = sorted((n, c["wall_s"]) for n, c in table[step].items() if c["status"] == "ok")
        if pts:
            ax.plot([n for n, _ in pts], [t for _, t in pts], marker="o", label=step)
    ns = [r["n"] for r in runs]
    if len(ns) > 1:
        ref = [1.0 * n / ns[0] for n in ns]  # a linear reference through 1 s at the smallest size
        ax.plot(ns, ref, "k--", linewidth=1, label="linear (k = 1)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("interactions (synthetic)")
    ax.set_ylabel("step wall time, s")
    ax.set_title("recdag: time per step against log size (12 slowest steps)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="200000,2000000,10000000")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per size before the run is killed")
    ap.add_argument("--assemble", action="store_true")
    ap.add_argument("--keep", type=Path, help="keep each size's data dir and Dagster home under KEEP/<size>")
    args = ap.parse_args()
    RUNS.mkdir(exist_ok=True)
    if not args.assemble:
        with tempfile.TemporaryDirectory(prefix="recdag-scale-code-") as scratch:
            code, rev = snapshot(Path(scratch))
            try:
                for n in [int(s) for s in args.sizes.split(",") if s]:
                    record = run_size(n, args.timeout, args.keep, code, rev)
                    (RUNS / f"synthetic_{n}.json").write_text(json.dumps(record, indent=1))
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(code)], cwd=ROOT, capture_output=True)
    runs = load_runs()
    if not runs:
        print("no runs in bench/scale_runs/", file=sys.stderr)
        return 1
    (BENCH / "results_scale.md").write_text("\n".join(render(runs)))
    plot(runs, BENCH / "scale.png")
    print("\n".join(render(runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
