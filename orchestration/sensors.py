"""Sensors: data-quality and run-failure alerts (resource ``alerts``: resources/alerts.py).

- ``asset_check_alerts``: every ``ALERT_INTERVAL_S`` it reads the runs that finished since its
  cursor (a run-update timestamp plus the ids of the runs read in the last ``OVERLAP_S``), turns
  each failed asset-check evaluation in them, ERROR or WARN, into one alert, and then delivers or
  retries every undelivered alert (the webhook may have been down on an earlier tick).
  On its first tick it looks back ``FIRST_LOOKBACK_S``.
- ``run_failure_alerts``: a ``run_failure_sensor``: one alert per failed run of this code location,
  naming the failed steps and the first error.

Both are ``DefaultSensorStatus.RUNNING``: alerts should not depend on someone remembering to turn
them on; with no webhook configured they only write ``quality.alerts`` and the log. The alert id is
a hash of (kind, run, asset, check, partition), so re-reading a run never alerts twice. DuckDB
writes wait at most ``AlertSink.lock_timeout_s`` for the pipeline's write lock; past it the alert
stays in a file spool and the next tick records it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import dagster as dg

from orchestration.tags import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG, PARTITION_TAG
from resources.alerts import Alert, AlertSink

ALERT_INTERVAL_S = 15
OVERLAP_S = 120.0  # run updates can commit slightly out of timestamp order
FIRST_LOOKBACK_S = 24 * 3600.0
MAX_RUNS_PER_TICK = 200
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


def run_partition(run: dg.DagsterRun) -> str | None:
    """The partition (``key``) or partition range (``start...end``) a run materialized."""
    tags = run.tags
    if PARTITION_TAG in tags:
        return tags[PARTITION_TAG]
    start, end = tags.get(PARTITION_RANGE_START_TAG), tags.get(PARTITION_RANGE_END_TAG)
    if start and end:
        return start if start == end else f"{start}...{end}"
    return None


def failed_check_alerts(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[Alert]:
    """One alert per failed (passed=False) asset-check evaluation in ``run``, any severity."""
    out, cursor = [], None
    while True:
        page = instance.get_records_for_run(run.run_id, cursor=cursor, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION, limit=500)
        for record in page.records:
            evaluation = record.event_log_entry.dagster_event.event_specific_data
            if evaluation.passed:
                continue
            partition = evaluation.partition or run_partition(run)
            out.append(
                Alert(
                    kind="asset_check",
                    asset=evaluation.asset_key.to_user_string(),
                    check=evaluation.check_name,
                    partition=partition,
                    run_id=run.run_id,
                    severity=evaluation.severity.value,
                    message=(
                        f"{evaluation.asset_key.to_user_string()}.{evaluation.check_name} ({evaluation.severity.value}"
                        f"{', blocking' if evaluation.blocking else ''}) failed in run {run.run_id} of job {run.job_name}"
                        f"{f' for {partition}' if partition else ''}: {evaluation.description or 'no description'}"
                    ),
                )
            )
        if not page.has_more:
            return out
        cursor = page.cursor


class _CheckCursor:
    """``{"after": last run-update timestamp read, "seen": run ids read within OVERLAP_S of it}``."""

    def __init__(self, raw: str | None):
        state = json.loads(raw) if raw else {}
        self.after: float | None = state.get("after")
        self.seen: dict[str, float] = state.get("seen", {})

    def since(self, now: float) -> datetime:
        start = (self.after - OVERLAP_S) if self.after is not None else now - FIRST_LOOKBACK_S
        return datetime.fromtimestamp(start, tz=UTC)

    def advance(self, records) -> None:
        for record in records:
            self.seen[record.dagster_run.run_id] = record.update_timestamp.timestamp()
        if self.seen:
            self.after = max([self.after or 0.0, *self.seen.values()])
            self.seen = {run_id: ts for run_id, ts in self.seen.items() if ts > self.after - OVERLAP_S}

    def dump(self) -> str:
        return json.dumps({"after": self.after, "seen": self.seen})


@dg.sensor(
    name="asset_check_alerts",
    minimum_interval_seconds=ALERT_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Failed asset checks (ERROR and WARN) of finished runs become alerts in quality.alerts, the log and "
        "the RECDAG_ALERT_WEBHOOK; each tick also retries undelivered alerts."
    ),
)
def asset_check_alerts(context: dg.SensorEvaluationContext, alerts: AlertSink) -> dg.SkipReason:
    state = _CheckCursor(context.cursor)
    now = datetime.now(UTC).timestamp()
    records = context.instance.get_run_records(
        filters=dg.RunsFilter(statuses=FINISHED, updated_after=state.since(now)),
        limit=MAX_RUNS_PER_TICK,
        order_by="update_timestamp",
        ascending=True,
    )
    fresh = [r for r in records if r.dagster_run.run_id not in state.seen]
    found = [alert for r in fresh for alert in failed_check_alerts(context.instance, r.dagster_run)]
    report = alerts.raise_alerts(found, log=context.log.warning) if found else alerts.flush(log=context.log.info)
    state.advance(records)
    context.update_cursor(state.dump())
    return dg.SkipReason(f"{len(fresh)} finished runs read, {len(found)} failed checks; alerts {report.summary()}")


@dg.run_failure_sensor(
    name="run_failure_alerts",
    minimum_interval_seconds=ALERT_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Each failed run of this code location becomes one ERROR alert (quality.alerts, log, webhook).",
)
def run_failure_alerts(context: dg.RunFailureSensorContext, alerts: AlertSink) -> None:
    run = context.dagster_run
    steps = context.get_step_failure_events()
    failed_steps = [e.step_key for e in steps if e.step_key]
    first_error = next(
        (e.event_specific_data.error.message.strip() for e in steps if e.event_specific_data and e.event_specific_data.error),
        context.failure_event.message or "no error message",
    )
    partition = run_partition(run)
    alert = Alert(
        kind="run_failure",
        asset=None,
        check=None,
        partition=partition,
        run_id=run.run_id,
        severity="ERROR",
        message=(
            f"run {run.run_id} of job {run.job_name}{f' for {partition}' if partition else ''} failed"
            f"{f' in steps {failed_steps}' if failed_steps else ''}: {first_error[:1500]}"
        ),
    )
    report = alerts.raise_alerts([alert], log=context.log.error)
    context.log.info(f"alert {alert.alert_id} for run {run.run_id}; alerts {report.summary()}")
    # returning None (not a SkipReason) lets the same tick go on to the next failed run


SENSORS = [asset_check_alerts, run_failure_alerts]
