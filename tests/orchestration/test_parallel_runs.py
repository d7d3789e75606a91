"""Two ingestion runs at once, multiprocess executor, one Dagster home, one warehouse: both succeed, data complete.

The two runs are two processes started together (tests/orchestration/parallel_support.py's CLI), each on the
multiprocess executor: every step of either run is its own process, so the warehouse sees two runs' steps at once.
The instance here is the deployed orchestration/dagster.yaml with the pool limit raised, so the Dagster pools
do not serialize the steps: the warehouse's own writer lock and read-only readers (resources/warehouse.py) are
what keep the two runs' DuckDB access apart. The warehouse must end up as one sequential run leaves it.
"""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "assets"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from dagster_support import ingest_every_day, local_resources  # noqa: E402

from assets.partitions import daily_partitions  # noqa: E402

pytestmark = pytest.mark.heavy(50)  # rough serial seconds of this module: scheduled first (tests/conftest.py)

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
TABLES = ["raw.interactions", "staging.interactions", "raw.items", "raw.users", "quality.quarantine"]
DEADLINE_S = 240


def _counts(warehouse: Path) -> dict[str, int]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
        counts["distinct events"] = con.execute(
            "SELECT count(*) FROM (SELECT DISTINCT user_id, item_id, ts, seq FROM raw.interactions)"
        ).fetchone()[0]
        counts["days"] = con.execute("SELECT count(DISTINCT event_date) FROM raw.interactions").fetchone()[0]
    return counts


def test_two_runs_at_once_with_the_multiprocess_executor_both_succeed(tmp_path, monkeypatch):
    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    config = (REPO_ROOT / "orchestration" / "dagster.yaml").read_text()
    assert "default_limit: 1" in config
    (home / "dagster.yaml").write_text(config.replace("default_limit: 1", "default_limit: 4"))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("RECDAG_DATA_DIR", str(data))  # the step processes build their resources from it
    days = daily_partitions.get_partition_keys()
    half = len(days) // 2
    ranges = [(days[0], days[half - 1]), (days[half], days[-1])]

    with dg.DagsterInstance.from_config(str(home)) as instance:  # create the storages once, not in both processes at once
        assert not instance.get_runs()
        instance.get_run_records()
    # two processes (parallel_support.py's CLI), each one run on the multiprocess executor with its own
    # forkserver: one forkserver per process, and a hard deadline, so a stuck run fails the test, never hangs it
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(HERE.parent / "assets"), str(HERE)])}
    procs = [
        subprocess.Popen(
            [sys.executable, str(HERE / "parallel_support.py"), *r],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for r in ranges
    ]
    outputs = []
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise AssertionError(f"a run did not finish in {DEADLINE_S} s") from None
        outputs.append(out.decode(errors="replace")[-3000:])
    assert all(p.returncode == 0 for p in procs), outputs

    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 2 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        # the two runs did overlap: each started before the other ended
        records = instance.get_run_records()
        assert max(r.start_time for r in records) < min(r.end_time for r in records)

    # the same days ingested sequentially, in one run
    sequential = tmp_path / "sequential"
    with dg.instance_for_test() as instance:
        ingest_every_day(local_resources(sequential, os.environ["RECDAG_DATASET"]), instance)
    parallel_counts, sequential_counts = _counts(data / "warehouse.duckdb"), _counts(sequential / "warehouse.duckdb")
    assert parallel_counts == sequential_counts
    assert parallel_counts["distinct events"] == parallel_counts["raw.interactions"] > 0
    assert parallel_counts["days"] == len(days)
