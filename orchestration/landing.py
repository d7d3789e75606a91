"""Live mode: the landing sensor turns files dropped into ``RECDAG_DATASET=landing:<dir>`` into runs.

``landing_files`` (``DefaultSensorStatus.RUNNING``, every ``RECDAG_LANDING_INTERVAL_S`` seconds,
default 30) keeps a cursor of file fingerprints (``{name: "size-mtime_ns"}``). On each tick it
lists the folder (``recsys.sources.landing.LandingReader``, which parses each new or changed file
once into its day cache) and, for the files whose fingerprint is new or changed:

1. adds the days they hold to the dynamic ``event_days`` partitions, and the cut-offs the landed
   days now complete to the dynamic ``cutoffs`` partitions (``assets.partitions.live_cutoffs``);
2. requests ``daily_ingestion`` runs for exactly those days: one run over the range of the new
   days (they are added in date order after the existing keys, so they are one range of the
   dynamic set), and one run per *existing* day a changed file touches. A late file for an old
   day therefore re-materializes that day only; Dagster then marks everything downstream of it
   (the split and the models) as stale in the UI, and the next retrain reads it;
3. raises an alert (``quality.alerts``, the log, the webhook) for a file with no plausible day:
   its lines belong to no partition, so it is reported rather than loaded.

Run keys hold the files' fingerprints, so a tick that is retried never launches a run twice, and
a file rewritten with new content launches again. Deleting a file does not delete its rows: that
is an explicit re-materialization (or a backfill) of its days by a person.
"""

from __future__ import annotations

import hashlib
import json

import dagster as dg

from assets.partitions import CUTOFF_WINDOW_DAYS, LIVE, cutoff_partitions, daily_partitions, live_cutoffs
from orchestration.jobs import ingest_job
from orchestration.tags import partition_range_tags
from resources import settings
from resources.alerts import Alert, AlertSink
from resources.datasets import DatasetSource


def _digest(parts: list[str]) -> str:
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:12]


def plan_landing(reader, seen: dict[str, str], existing_days: set[str], existing_cutoffs: set[str]) -> dict:
    """What one tick does, as plain data (tested without a daemon): new partition keys, runs, alerts."""
    current = reader.file_fingerprints()
    changed = sorted(name for name, fp in current.items() if seen.get(name) != fp)
    all_days = reader.days()
    day_keys = {d.isoformat() for d in all_days}
    new_days = sorted(day_keys - existing_days)
    cutoffs = {c.isoformat() for c in live_cutoffs(all_days, CUTOFF_WINDOW_DAYS)}
    touched: dict[str, list[str]] = {}
    for name in changed:
        for day in reader.file_days(name):
            touched.setdefault(day.isoformat(), []).append(f"{name}={current[name]}")
    runs = []
    if new_days:
        stamp = _digest([f for d in new_days for f in touched.get(d, [])] + new_days)
        runs.append({"keys": new_days, "run_key": f"landing:{new_days[0]}...{new_days[-1]}:{stamp}"})
    for day in sorted(set(touched) - set(new_days)):
        runs.append({"keys": [day], "run_key": f"landing:{day}:{_digest(touched[day])}"})
    unroutable = [name for name in reader.unroutable_files() if name in changed]
    return {
        "files": current,
        "changed": changed,
        "new_days": new_days,
        "new_cutoffs": sorted(cutoffs - existing_cutoffs),
        "runs": runs,
        "unroutable": unroutable,
    }


def run_request(run: dict) -> dg.RunRequest:
    keys = run["keys"]
    if len(keys) == 1:
        return dg.RunRequest(run_key=run["run_key"], partition_key=keys[0], tags={"recdag/trigger": "landing"})
    return dg.RunRequest(run_key=run["run_key"], tags={**partition_range_tags(keys[0], keys[-1]), "recdag/trigger": "landing"})


@dg.sensor(
    name="landing_files",
    job=ingest_job,
    minimum_interval_seconds=settings.landing_interval_s(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Live mode: new or changed files in the landing folder add their days (and the cut-offs they complete) as "
        "partitions and launch daily_ingestion for exactly those days; a late file re-runs its day only."
    ),
)
def landing_files(context: dg.SensorEvaluationContext, source: DatasetSource, alerts: AlertSink):
    seen = json.loads(context.cursor) if context.cursor else {}
    reader = source.reader()
    instance = context.instance
    plan = plan_landing(
        reader,
        seen,
        set(instance.get_dynamic_partitions(daily_partitions.name)),
        set(instance.get_dynamic_partitions(cutoff_partitions.name)),
    )
    if not plan["changed"]:
        return dg.SkipReason(f"{len(plan['files'])} landing files, none new or changed")
    if plan["unroutable"]:
        found = [
            Alert(
                kind="landing_file",
                asset="raw_interactions",
                check=name,
                partition=None,
                run_id=plan["files"][name],
                severity="ERROR",
                message=(
                    f"landing file {reader.folder / name} has no row with a plausible timestamp inside "
                    f"{reader.window}; it was not loaded (fix it and drop it again)"
                ),
            )
            for name in plan["unroutable"]
        ]
        alerts.raise_alerts(found, log=context.log.warning)
    context.log.info(
        f"landing: {len(plan['changed'])} new/changed files, new days {plan['new_days']}, new cut-offs {plan['new_cutoffs']}, "
        f"{len(plan['runs'])} ingestion runs"
    )
    requests = []
    if plan["new_days"]:
        requests.append(daily_partitions.build_add_request(plan["new_days"]))
    if plan["new_cutoffs"]:
        requests.append(cutoff_partitions.build_add_request(plan["new_cutoffs"]))
    return dg.SensorResult(
        run_requests=[run_request(r) for r in plan["runs"]],
        dynamic_partitions_requests=requests,
        cursor=json.dumps(plan["files"]),
    )


LANDING_SENSORS = [landing_files] if LIVE else []


def register_landed(instance: dg.DagsterInstance, source: DatasetSource | None = None, log=print) -> dict:
    """Add every landed day and cut-off as partitions now, without runs: what `make run` does in
    live mode before it ingests every day in one run (the sensor's cursor is left alone)."""
    reader = (source or DatasetSource()).reader()
    plan = plan_landing(
        reader,
        {},
        set(instance.get_dynamic_partitions(daily_partitions.name)),
        set(instance.get_dynamic_partitions(cutoff_partitions.name)),
    )
    if plan["new_days"]:
        instance.add_dynamic_partitions(daily_partitions.name, plan["new_days"])
    if plan["new_cutoffs"]:
        instance.add_dynamic_partitions(cutoff_partitions.name, plan["new_cutoffs"])
    for name in plan["unroutable"]:
        log(f"landing file {reader.folder / name} has no row with a plausible timestamp: not loaded")
    log(f"landing: {len(plan['files'])} files, {len(plan['new_days'])} new days, {len(plan['new_cutoffs'])} new cut-offs")
    return plan
