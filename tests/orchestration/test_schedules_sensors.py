"""Schedules and alert sensors, in process: a temporary Dagster instance, DuckDB and webhook receiver."""

import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import duckdb
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from e2e_support import WebhookReceiver  # noqa: E402

from orchestration.sensors import asset_check_alerts, run_failure_alerts  # noqa: E402
from resources.alerts import AlertSink  # noqa: E402


class EventsConfig(dg.Config):
    contract_ok: bool = False
    volume_ok: bool = False


@dg.asset(
    check_specs=[
        dg.AssetCheckSpec("contract", asset="events", blocking=True),
        dg.AssetCheckSpec("volume", asset="events"),
    ]
)
def events(config: EventsConfig) -> dg.MaterializeResult:
    return dg.MaterializeResult(
        check_results=[
            dg.AssetCheckResult(
                check_name="contract",
                passed=config.contract_ok,
                severity=dg.AssetCheckSeverity.ERROR,
                description="3 rows with a null user_id",
            ),
            dg.AssetCheckResult(
                check_name="volume",
                passed=config.volume_ok,
                severity=dg.AssetCheckSeverity.WARN,
                description="volume 40x the trailing median",
            ),
        ]
    )


@dg.asset(deps=[events])
def downstream() -> None:
    return None


@pytest.fixture
def instance(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as inst:
        yield inst


@pytest.fixture
def receiver():
    r = WebhookReceiver()
    yield r
    r.close()


def _materialize(instance, contract_ok: bool, volume_ok: bool) -> dg.ExecuteInProcessResult:
    config = dg.RunConfig(ops={"events": EventsConfig(contract_ok=contract_ok, volume_ok=volume_ok)})
    return dg.materialize([events, downstream], instance=instance, run_config=config, raise_on_error=False)


def _tick(instance, sink: AlertSink, cursor: str | None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"alerts": sink})
    result = asset_check_alerts(context)
    return result, context.cursor


def _alerts(data_dir: Path) -> list[dict]:
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        return (
            con.execute(
                'SELECT kind, asset, "check", severity, run_id, message, delivered_at, attempts, last_error FROM quality.alerts ORDER BY asset, "check"'
            )
            .pl()
            .to_dicts()
        )


def test_failed_checks_alert_once_across_ticks(instance, receiver, tmp_path):
    sink = AlertSink(webhook_url=receiver.url, data_dir=str(tmp_path))
    failed = _materialize(instance, contract_ok=False, volume_ok=False)
    assert not failed.success  # the blocking ERROR check stops the run
    passed = _materialize(instance, contract_ok=True, volume_ok=True)
    assert passed.success

    result, cursor = _tick(instance, sink, None)
    assert "2 failed checks" in result.skip_message
    rows = _alerts(tmp_path)
    assert [(r["asset"], r["check"], r["severity"]) for r in rows] == [("events", "contract", "ERROR"), ("events", "volume", "WARN")]
    assert {r["run_id"] for r in rows} == {failed.run_id}
    assert all(r["delivered_at"] is not None and r["attempts"] == 1 and r["last_error"] is None for r in rows)
    assert len(receiver.bodies) == 2
    body = next(b for b in receiver.bodies if "contract" in b["text"])
    assert "3 rows with a null user_id" in body["text"] and failed.run_id in body["text"]
    assert [block["type"] for block in body["blocks"]] == ["header", "section", "context"]

    result, cursor = _tick(instance, sink, cursor)
    assert "0 failed checks" in result.skip_message
    assert len(_alerts(tmp_path)) == 2 and len(receiver.bodies) == 2

    # even with the cursor lost, the idempotent alert id keeps it at one alert per failure
    _tick(instance, sink, None)
    assert len(_alerts(tmp_path)) == 2 and len(receiver.bodies) == 2

    third = _materialize(instance, contract_ok=True, volume_ok=False)
    result, cursor = _tick(instance, sink, cursor)
    rows = _alerts(tmp_path)
    assert len(rows) == 3 and len(receiver.bodies) == 3
    assert any(r["run_id"] == third.run_id and r["severity"] == "WARN" for r in rows)


def test_down_webhook_keeps_alert_until_a_later_tick_delivers_it(instance, receiver, tmp_path):
    sink = AlertSink(webhook_url=receiver.url, data_dir=str(tmp_path))
    _materialize(instance, contract_ok=True, volume_ok=False)
    receiver.fail_next(10**6)  # the webhook answers 503 until further notice

    _, cursor = _tick(instance, sink, None)
    _, cursor = _tick(instance, sink, cursor)
    (row,) = _alerts(tmp_path)
    assert row["delivered_at"] is None and row["attempts"] == 2 and "503" in row["last_error"]
    assert receiver.bodies == []

    receiver.fail_next(0)
    _, cursor = _tick(instance, sink, cursor)
    (row,) = _alerts(tmp_path)
    assert row["delivered_at"] is not None and row["attempts"] == 3 and row["last_error"] is None
    assert len(receiver.bodies) == 1 and "volume" in receiver.bodies[0]["text"]
    _tick(instance, sink, cursor)
    assert len(receiver.bodies) == 1


def test_unreachable_webhook_is_retried_without_slowing_ticks(instance, tmp_path):
    receiver = WebhookReceiver()
    port, url = receiver.server.server_address[1], receiver.url
    receiver.close()  # nothing listens on the port any more: connection refused
    sink = AlertSink(webhook_url=url, data_dir=str(tmp_path), http_timeout_s=2.0)
    _materialize(instance, contract_ok=False, volume_ok=False)
    _, cursor = _tick(instance, sink, None)
    rows = _alerts(tmp_path)
    assert all(r["delivered_at"] is None for r in rows)
    # after the first connection failure the tick stops posting: the other alert waits
    assert sorted(r["attempts"] for r in rows) == [0, 1]
    assert "posting to" in next(r["last_error"] for r in rows if r["attempts"] == 1)

    back = WebhookReceiver(port=port)  # the endpoint comes back
    try:
        _tick(instance, sink, cursor)
        rows = _alerts(tmp_path)
        assert all(r["delivered_at"] is not None and r["last_error"] is None for r in rows)
        assert len(back.bodies) == 2
    finally:
        back.close()


def test_run_failure_sensor_one_alert_per_failed_run(instance, receiver, tmp_path):
    sink = AlertSink(webhook_url=receiver.url, data_dir=str(tmp_path))
    failed = _materialize(instance, contract_ok=False, volume_ok=True)
    run = instance.get_run_by_id(failed.run_id)
    (failure,) = instance.get_records_for_run(failed.run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
    for _ in range(2):  # the same failure seen by two ticks
        context = dg.build_run_status_sensor_context(
            sensor_name="run_failure_alerts",
            dagster_event=failure.event_log_entry.dagster_event,
            dagster_instance=instance,
            dagster_run=run,
            resources={"alerts": sink},
        ).for_run_failure()
        run_failure_alerts(context)
    (row,) = _alerts(tmp_path)
    assert row["kind"] == "run_failure" and row["severity"] == "ERROR" and row["run_id"] == failed.run_id
    assert "events" in row["message"] and "contract" in row["message"]  # the failed step and the blocking check
    assert len(receiver.bodies) == 1 and row["delivered_at"] is not None


def test_locked_warehouse_spools_and_next_tick_records(instance, receiver, tmp_path):
    sink = AlertSink(webhook_url=receiver.url, data_dir=str(tmp_path), lock_timeout_s=1.0)
    _materialize(instance, contract_ok=True, volume_ok=False)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('locked', flush=True); time.sleep(60)",
            str(tmp_path / "warehouse.duckdb"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"  # another process (the pipeline) holds the write lock
        started = time.monotonic()
        result, cursor = _tick(instance, sink, None)
        assert time.monotonic() - started < 10  # the tick gives up on the lock instead of blocking
        assert "DuckDB locked" in result.skip_message
        assert len(list((tmp_path / "alerts" / "spool").glob("*.json"))) == 1
        assert receiver.bodies == []
    finally:
        holder.kill()
        holder.wait()
    _tick(instance, sink, cursor)  # no new runs: the spooled alert is recorded and delivered now
    (row,) = _alerts(tmp_path)
    assert row["check"] == "volume" and row["delivered_at"] is not None
    assert len(receiver.bodies) == 1
    assert not list((tmp_path / "alerts" / "spool").glob("*.json"))


def test_schedules_are_stopped_and_target_the_right_partitions():
    from orchestration.definitions import defs

    daily = defs.resolve_schedule_def("daily_ingestion_schedule")
    weekly = defs.resolve_schedule_def("weekly_retrain")
    assert daily.default_status == weekly.default_status == dg.DefaultScheduleStatus.STOPPED
    assert daily.job_name == "daily_ingestion" and weekly.job_name == "train_and_evaluate"
    assert weekly.cron_schedule == "0 4 * * 1"
    tick = datetime(2017, 11, 28, 2, 15, tzinfo=UTC)
    with dg.build_schedule_context(scheduled_execution_time=tick) as context:
        requests = daily.evaluate_tick(context).run_requests
    assert [r.partition_key for r in requests] == ["2017-11-27"]  # the day that just ended
    from assets.partitions import latest_cutoff

    repo = defs.get_repository_def()
    with dg.build_schedule_context(scheduled_execution_time=datetime(2017, 12, 25, 4, 0, tzinfo=UTC), repository_def=repo) as context:
        retrain = weekly.evaluate_tick(context).run_requests
    assert [r.partition_key for r in retrain] == [latest_cutoff()]  # the newest rolling-origin cut-off
    sensors = {s.name: s for s in defs.sensors}
    assert set(sensors) >= {"asset_check_alerts", "run_failure_alerts"}
    assert all(sensors[n].default_status == dg.DefaultSensorStatus.RUNNING for n in ("asset_check_alerts", "run_failure_alerts"))
