"""Live mode end to end: the real `dagster dev` (webserver, daemon, code server) on a landing folder.

Replayed day files arrive (orchestration/replay.py) and the daemon-run landing sensor adds their
days as dynamic partitions and launches one ingestion run for them; a corrupted day fails its
blocking ``quarantine_share`` check and the alert sensor posts it to a local webhook; a late file
for an old day re-runs that day only; the weekly retrain, started as a person would (GraphQL
``startSchedule``, with ``RECDAG_RETRAIN_CRON`` firing every minute), trains and evaluates the
newest cut-off whose days are all ingested.
"""

import json
import os
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
from e2e_support import (
    DagsterDev,
    GraphQL,
    WebhookReceiver,
    deployment_env,
    deployment_home,
    free_port,
    read_warehouse,
    repository_selector,
    write_taobao_csv,
)

from assets.partitions import live_cutoffs
from orchestration.replay import replay

pytestmark = pytest.mark.heavy(230)  # rough serial seconds of this module: scheduled first (tests/conftest.py)

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "e2e-live"

START = date(2017, 11, 25)
N_DAYS = 9
FIRST_BATCH = 7  # days replayed before dagster dev starts looking
CORRUPT_DAY = START + timedelta(days=FIRST_BATCH)  # the 8th day arrives with 30% garbage lines
LATE_DAY = START + timedelta(days=2)  # a late file adds events to the 3rd day
N_LATE = 40
CUTOFF_DAYS = 2
INTERVAL_S = 3
STARTUP_DEADLINE_S = 150
RUN_DEADLINE_S = 180
TRAIN_DEADLINE_S = 420

RUNS = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs { results { runId status jobName tags { key value } assetMaterializations { assetKey { path } partition } } }
  }
}"""
PARTITION_KEYS = """
query Keys($asset: AssetKeyInput!) { assetNodeOrError(assetKey: $asset) { ... on AssetNode { partitionKeys } } }"""
START_SCHEDULE = """
mutation Start($selector: ScheduleSelector!) {
  startSchedule(scheduleSelector: $selector) {
    __typename
    ... on ScheduleStateResult { scheduleState { status } }
    ... on PythonError { message }
  }
}"""


@pytest.fixture
def live(tmp_path):
    home, data = deployment_home(tmp_path, REPO_ROOT)
    landing = tmp_path / "landing"
    landing.mkdir()
    source = tmp_path / "taobao.csv"
    write_taobao_csv(source, n_interactions=12_000, n_days=N_DAYS, start=START)
    receiver = WebhookReceiver()
    env = deployment_env(
        home,
        data,
        f"landing:{landing}",
        receiver.url,
        REPO_ROOT,
        RECDAG_CUTOFF_DAYS=str(CUTOFF_DAYS),
        RECDAG_LANDING_INTERVAL_S=str(INTERVAL_S),
        RECDAG_RETRAIN_CRON="* * * * *",
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # the first days are in the folder before the deployment starts (a folder that already has data)
    replay(f"taobao:{source}", landing, days=FIRST_BATCH, data_dir=str(tmp_path / "replay-cache"), log=lambda _: None)
    dev = DagsterDev(REPO_ROOT, free_port(), env, ARTIFACTS / "dagster-dev.log")
    try:
        dev.wait_ready(STARTUP_DEADLINE_S)
        yield {"dev": dev, "receiver": receiver, "data": data, "landing": landing, "source": source, "cache": tmp_path / "replay-cache"}
    finally:
        dev.stop()
        receiver.close()


def _landing_runs(gql: GraphQL) -> list[dict]:
    runs = gql.query(RUNS, {"filter": {"tags": [{"key": "recdag/trigger", "value": "landing"}]}})["runsOrError"]["results"]
    return sorted(runs, key=lambda r: r["runId"])


def _tags(run: dict) -> dict:
    return {t["key"]: t["value"] for t in run["tags"]}


def _wait_runs(gql: GraphQL, n: int, deadline_s: float, dev: DagsterDev) -> list[dict]:
    """Wait until ``n`` landing-triggered runs exist and all have finished."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        runs = _landing_runs(gql)
        if len(runs) >= n and all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs):
            return runs
        time.sleep(2.0)
    raise TimeoutError(f"{n} landing runs not finished after {deadline_s}s: {_landing_runs(gql)}\n{dev.log_tail()}")


def _partitions(run: dict, asset: str) -> set[str]:
    return {m["partition"] for m in run["assetMaterializations"] if m["assetKey"]["path"] == [asset]}


def _day_counts(path: Path) -> dict[str, int]:
    query = "SELECT CAST(event_date AS VARCHAR), count(*) FROM staging.interactions GROUP BY 1"
    return dict(read_warehouse(path, lambda con: con.execute(query).fetchall()))


@pytest.mark.e2e
def test_live_mode_end_to_end(live):
    dev, receiver = live["dev"], live["receiver"]
    gql = GraphQL(dev.url + "/graphql")
    selector = repository_selector(gql)
    first_days = {(START + timedelta(days=k)).isoformat() for k in range(FIRST_BATCH)}

    # 1. the days already in the folder: one partition each, one ingestion run over all of them
    (first,) = _wait_runs(gql, 1, RUN_DEADLINE_S, dev)
    assert first["status"] == "SUCCESS", dev.log_tail()
    assert _partitions(first, "interactions") == first_days
    keys = gql.query(PARTITION_KEYS, {"asset": {"path": ["raw_interactions"]}})["assetNodeOrError"]["partitionKeys"]
    assert set(keys) == first_days

    # 2. a corrupted day arrives: its run fails the blocking check and the alert reaches the webhook
    replay(
        f"taobao:{live['source']}",
        live["landing"],
        days=1,
        skip_days=FIRST_BATCH,
        corrupt_day=(CORRUPT_DAY, 0.3),
        data_dir=str(live["cache"]),
        log=lambda _: None,
    )
    runs = _wait_runs(gql, 2, RUN_DEADLINE_S, dev)
    (bad,) = [r for r in runs if r["runId"] != first["runId"]]
    assert _tags(bad).get("dagster/partition") == CORRUPT_DAY.isoformat()
    assert bad["status"] == "FAILURE" and not _partitions(bad, "interactions")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not [t for t in receiver.texts() if "quarantine_share" in t and CORRUPT_DAY.isoformat() in t]:
        time.sleep(2.0)
    assert [t for t in receiver.texts() if "quarantine_share" in t and CORRUPT_DAY.isoformat() in t], receiver.texts()

    # 3. a late file for an old day re-runs that day only; the other days keep their rows
    before = _day_counts(live["data"] / "warehouse.duckdb")
    day_file = live["landing"] / f"{LATE_DAY.isoformat()}.csv"
    lines = [line.split(",") for line in day_file.read_text().splitlines()[:N_LATE]]
    extra = [",".join([*parts[:-1], str(int(parts[-1]) + 1)]) for parts in lines]  # the same events one second later
    tmp = live["landing"] / ".late.tmp"
    tmp.write_text("\n".join(extra) + "\n")
    os.replace(tmp, live["landing"] / f"{LATE_DAY.isoformat()}-late.csv")
    runs = _wait_runs(gql, 3, RUN_DEADLINE_S, dev)
    (late,) = [r for r in runs if r["runId"] not in (first["runId"], bad["runId"])]
    assert late["status"] == "SUCCESS", dev.log_tail()
    assert _tags(late).get("dagster/partition") == LATE_DAY.isoformat()
    assert _partitions(late, "interactions") == {LATE_DAY.isoformat()}
    after = _day_counts(live["data"] / "warehouse.duckdb")
    assert after[LATE_DAY.isoformat()] > before[LATE_DAY.isoformat()]
    assert {d: n for d, n in after.items() if d != LATE_DAY.isoformat()} == {d: n for d, n in before.items() if d != LATE_DAY.isoformat()}

    # 4. the weekly retrain, switched on as a person would, trains the newest cut-off that is fully ingested
    ingested = sorted(date.fromisoformat(d) for d in first_days)
    expected = live_cutoffs(ingested, CUTOFF_DAYS)[-1].isoformat()
    started = gql.query(START_SCHEDULE, {"selector": {**selector, "scheduleName": "weekly_retrain"}})["startSchedule"]
    assert started["__typename"] == "ScheduleStateResult", started
    deadline = time.monotonic() + TRAIN_DEADLINE_S
    train = None
    while time.monotonic() < deadline:
        found = gql.query(RUNS, {"filter": {"pipelineName": "train_and_evaluate"}})["runsOrError"]["results"]
        done = [r for r in found if r["status"] in ("SUCCESS", "FAILURE", "CANCELED")]
        if done:
            train = done[0]
            break
        time.sleep(3.0)
    (ARTIFACTS / "webhook-bodies.json").write_text(json.dumps(receiver.bodies, indent=1))
    assert train is not None, f"no retrain finished in {TRAIN_DEADLINE_S}s\n{dev.log_tail()}"
    assert train["status"] == "SUCCESS", dev.log_tail(8000)
    assert _tags(train).get("dagster/partition") == expected
    assert _partitions(train, "evaluation") == {expected}
