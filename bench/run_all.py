"""Run every benchmark in bench/ and assemble bench/RESULTS.md from their result sections.

python bench/run_all.py            # run the benches, then assemble
python bench/run_all.py --assemble # only assemble from the existing results_*.md
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SCRIPTS = [
    "bench_backtest.py",
    "bench_tie_order.py",
    "bench_make_run.py",
    "bench_outrank.py",
    "bench_item_index.py",
    "bench_engine_item_index.py",  # the co-occurrence index on the C++ builder, DuckDB and Spark local mode
    "bench_event_features.py",  # OutRank's input rows: the statement on DuckDB and Spark beside the polars/numpy code it replaced
    "bench_ranker_frames.py",  # the rankers' history features: the statement on DuckDB and Spark beside the polars/numpy code it replaced
    "bench_pi2i_ml100k.py",
    "bench_ingest.py",
    "bench_final_stage.py",
    "bench_ease_large.py",
    "bench_neural_budget.py",
    "bench_search_budget.py",
    "bench_ranker_budget.py",
    "bench_ranker_cv.py",
    "bench_dense_topk.py",
    "bench_scale.py",  # the longest: the whole pipeline at 0.2M, 2M and 10M interactions
]
SECTIONS = [
    "results_backtest.md",
    "results_tie_order.md",
    "results_make_run.md",
    "results_make_run_synthetic.md",
    "results_pi2i_ml100k.md",
    "results_outrank.md",
    "results_item_index.md",
    "results_engine_item_index.md",
    "results_event_features.md",
    "results_ranker_frames.md",
    "results_ranker_frames_per_user.md",
    "results_ingest.md",
    "results_final_stage.md",
    "results_ease_large.md",
    "results_neural_budget.md",
    "results_search_budget.md",
    "results_ranker_budget.md",
    "results_ranker_cv.md",
    "results_dense_topk.md",
    "results_scale.md",
    "results_step.md",  # bench_step.py needs a kept run (bench_scale.py --keep): not in SCRIPTS
    "results_pi2i_budget.md",  # bench_pi2i_budget.py, the same: needs a kept run
    "results_guard_rule.md",  # bench_guard_rule.py needs finished runs' warehouses (--runs): not in SCRIPTS
    "results_seed_spread.md",  # bench_seed_spread.py needs a finished run (--data-dir): not in SCRIPTS
    "results_stack_windows.md",  # bench_stack_windows.py needs a finished backtest's archive (--data-dir): not in SCRIPTS
    "results_gpu.md",  # bench_gpu.py needs a machine with a GPU: not in SCRIPTS
]

HEADER = """# Benchmark results

Every number here comes from a script in `bench/`, run on this project's 2-core machine, with the
peer library measured side by side in the same run and peak RSS recorded. Re-run with
`make bench` (or one script alone) and commit the regenerated sections. The GPU section alone ran on
a lent machine with an NVIDIA H200 (it says so).
"""


def assemble() -> None:
    parts = [HEADER]
    for name in SECTIONS:
        path = BENCH / name
        if path.exists():
            parts.append(path.read_text().strip())
        else:
            parts.append(f"## {name}\n\n_not measured yet: run `python bench/{name.replace('results_', 'bench_').replace('.md', '.py')}`_")
    (BENCH / "RESULTS.md").write_text("\n\n".join(parts) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--assemble", action="store_true")
    args = ap.parse_args()
    if not args.assemble:
        for script in SCRIPTS:
            print(f"== {script}", flush=True)
            subprocess.run([sys.executable, str(BENCH / script)], check=True)
        per_user = ["--sizes", "1000000", "--cutoff", "per_user", "--results", str(BENCH / "results_ranker_frames_per_user.md")]
        subprocess.run([sys.executable, str(BENCH / "bench_ranker_frames.py"), *per_user], check=True)
        subprocess.run(
            [
                sys.executable,
                str(BENCH / "bench_make_run.py"),
                "--dataset",
                "synthetic:200000",
                "--splits",
                "temporal",
                "--out",
                str(BENCH / "results_make_run_synthetic.md"),
            ],
            check=True,
        )
    assemble()
    return 0


if __name__ == "__main__":
    sys.exit(main())
