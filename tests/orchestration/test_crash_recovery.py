"""Crashes never wedge the deployment: `make run` (``python -m orchestration.run``) killed or stopped mid-ingestion.

- SIGKILL during ingestion leaves a STARTED run holding its ``duckdb_writer`` pool slot; the next `make run` on
  the same Dagster home reports that run FAILURE, frees the slot, ingests, and the warehouse holds every valid
  event exactly once (the killed run's DuckDB transaction never committed).
- SIGTERM stops a `make run` whose step waits for a pool slot another (live) run holds, within seconds, with a
  non-zero exit; its run ends CANCELED and holds no slot.

Each case is a real subprocess on the small synthetic dataset, with the deployed orchestration/dagster.yaml.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from assets.partitions import daily_partitions
from resources.datasets import DatasetSource

pytestmark = pytest.mark.heavy(70)  # rough serial seconds of this module: scheduled first (tests/conftest.py)

REPO_ROOT = Path(__file__).resolve().parents[2]
ET = dg.DagsterEventType


def _deployment(tmp_path: Path) -> tuple[dict, Path, Path]:
    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    shutil.copy(REPO_ROOT / "orchestration" / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "RECDAG_DATA_DIR": str(data)}
    return env, home, data


def _make_run(env: dict, out: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "orchestration.run", "--plain", "--stages", "daily_ingestion"]
    return subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdout=out.open("w"), stderr=subprocess.STDOUT)


@contextmanager
def _instance(home: Path):
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def _run_of(instance: dg.DagsterInstance, proc: subprocess.Popen) -> dg.DagsterRun | None:
    for run in instance.get_runs():
        if run.tags.get("recdag/worker_pid", "").split(":")[0] == str(proc.pid):
            return run
    return None


def _wait_for(instance, proc, predicate, what: str, timeout_s: float = 90.0) -> dg.DagsterRun:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"make run exited ({proc.returncode}) before {what}"
        run = _run_of(instance, proc)
        if run is not None and predicate(instance, run):
            return run
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _step_started(step: str):
    def started(instance, run) -> bool:
        return any(r.event_log_entry.step_key == step for r in instance.get_records_for_run(run.run_id, of_type=ET.STEP_START).records)

    return started


def _blocked_on_pool(instance, run) -> bool:
    records = instance.get_records_for_run(run.run_id, of_type=ET.ENGINE_EVENT).records
    return any("blocked by limit for pool duckdb_writer" in (r.event_log_entry.message or "") for r in records)


def test_sigkill_mid_ingestion_then_make_run_recovers_and_loads_exactly_once(tmp_path):
    env, home, data = _deployment(tmp_path)
    first = _make_run(env, tmp_path / "first.out")
    try:
        with _instance(home) as instance:
            killed = _wait_for(instance, first, _step_started("raw_interactions"), "raw_interactions to start")
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            assert instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.STARTED
            assert killed.run_id in instance.event_log_storage.get_concurrency_run_ids()  # its pool slot, never freed
    finally:
        first.kill()

    second = subprocess.run(
        [sys.executable, "-m", "orchestration.run", "--plain", "--stages", "daily_ingestion"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"recovered stale run {killed.run_id}" in second.stdout
    with _instance(home) as instance:
        assert instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE
        assert [r.status for r in instance.get_runs() if r.run_id != killed.run_id] == [dg.DagsterRunStatus.SUCCESS]
        assert not instance.event_log_storage.get_concurrency_run_ids()

    days = daily_partitions.get_partition_keys()
    reader = DatasetSource(dataset=env["RECDAG_DATASET"], data_dir=str(data)).reader()
    valid = reader.read_window(date.fromisoformat(days[0]), date.fromisoformat(days[-1])).interactions.height
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT count(*) FROM raw.interactions").fetchone()[0]
        distinct = con.execute("SELECT count(*) FROM (SELECT DISTINCT user_id, item_id, ts, seq FROM raw.interactions)").fetchone()[0]
        logged = con.execute("SELECT count(DISTINCT run_id) FROM quality.ingestion_log").fetchone()[0]
    assert rows == distinct == valid > 0
    assert logged == 1  # nothing of the killed run's transaction was committed


def test_sigterm_stops_make_run_blocked_on_a_pool_slot_within_seconds(tmp_path):
    env, home, _ = _deployment(tmp_path)
    holder = _make_run(env, tmp_path / "holder.out")
    waiter = None
    try:
        with _instance(home) as instance:
            _wait_for(instance, holder, _step_started("raw_interactions"), "the holder's raw_interactions to start")
            holder.send_signal(signal.SIGSTOP)  # alive, holding the duckdb_writer slot: a hung step
            waiter = _make_run(env, tmp_path / "waiter.out")
            blocked = _wait_for(instance, waiter, _blocked_on_pool, "the second make run to wait for the pool")
            sent = time.monotonic()
            waiter.send_signal(signal.SIGTERM)
            returncode = waiter.wait(timeout=30)
            elapsed = time.monotonic() - sent
            output = (tmp_path / "waiter.out").read_text()
            assert elapsed < 10, output[-3000:]
            assert returncode == 128 + signal.SIGTERM, output[-3000:]
            assert "stopped by SIGTERM" in output
            assert instance.get_run_by_id(blocked.run_id).status in (dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.FAILURE)
            assert blocked.run_id not in instance.event_log_storage.get_concurrency_run_ids()
    finally:
        holder.kill()
        if waiter is not None:
            waiter.kill()
