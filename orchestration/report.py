"""`python -m orchestration.report [--run-id ID] [--out PATH]` (`make report`): write the self-contained
HTML report of an evaluation run (default: the newest) from the warehouse."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from resources import settings
from resources.reports import latest_evaluated_run, write_report
from resources.warehouse import Warehouse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-id", default=None, help="the evaluation run to report (default: the newest)")
    parser.add_argument("--out", type=Path, default=None, help="output file (default: $RECDAG_DATA_DIR/exports/report.html)")
    args = parser.parse_args(argv)
    data_dir = settings.data_dir()
    if not (data_dir / "warehouse.duckdb").exists():
        print(f"no warehouse at {data_dir / 'warehouse.duckdb'}: run `make run` first", file=sys.stderr)
        return 1
    warehouse = Warehouse(data_dir=str(data_dir))
    run_id = args.run_id or latest_evaluated_run(warehouse)
    if run_id is None:
        print("eval.metrics has no evaluated run yet: run `make run` first", file=sys.stderr)
        return 1
    try:
        path = write_report(warehouse, run_id, args.out)
    except ValueError as err:  # a run id with no eval.metrics rows
        print(err, file=sys.stderr)
        return 1
    print(f"report of run {run_id}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
