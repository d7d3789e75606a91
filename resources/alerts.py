"""Alerts: recorded in ``quality.alerts``, logged, and posted to a Slack-compatible webhook.

API
---
- ``Alert(kind, asset, check, partition, run_id, severity, message)``: frozen; ``kind`` is
  ``"asset_check"``, ``"run_failure"`` or ``"landing_file"`` (orchestration/landing.py), ``severity`` ``"ERROR"`` or ``"WARN"``. ``alert_id`` is a
  hash of (kind, run_id, asset, check, partition), so the same failure seen twice is one alert.
  ``payload()`` is the webhook body: ``{"text": ..., "blocks": [header, section, context]}``.
- ``AlertSink`` (``ConfigurableResource``, resource key ``alerts``): ``webhook_url`` (default
  ``RECDAG_ALERT_WEBHOOK``), ``data_dir`` (default ``RECDAG_DATA_DIR``), ``lock_timeout_s`` (how
  long one tick waits for the DuckDB write lock), ``http_timeout_s``, ``max_deliveries``.
  - ``raise_alerts(alerts, log=None) -> DeliveryReport``: logs each alert, spools it to
    ``$DATA/alerts/spool/<alert_id>.json`` (a plain file write, never blocked by the pipeline),
    then ``flush``.
  - ``flush(log=None) -> DeliveryReport``: moves spooled alerts into ``quality.alerts`` (insert, or
    nothing when the alert_id exists), posts undelivered alerts to the webhook and records
    ``attempts``, ``delivered_at`` and ``last_error``. When the pipeline holds the DuckDB lock past
    ``lock_timeout_s`` it returns at once with ``locked=True``; the spool and the undelivered rows
    are picked up by a later tick. Without pending work it does not open DuckDB at all.

Delivery is at least once: a POST that succeeded but whose outcome could not be written back
(DuckDB locked in between) is posted again on the next flush.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
from pydantic import Field

from resources import settings
from resources.warehouse import Warehouse, utcnow

ALERT_COLUMNS = ("alert_id", "kind", "asset", "check", "partition", "run_id", "severity", "message", "created_at")


@dataclass(frozen=True)
class Alert:
    kind: str
    asset: str | None
    check: str | None
    partition: str | None
    run_id: str
    severity: str
    message: str

    @property
    def alert_id(self) -> str:
        key = "|".join(str(part or "") for part in (self.kind, self.run_id, self.asset, self.check, self.partition))
        return hashlib.sha1(key.encode()).hexdigest()[:24]

    @property
    def title(self) -> str:
        if self.kind == "asset_check":
            what = f"check {self.asset}.{self.check} failed"
        elif self.kind == "landing_file":
            what = f"landing file {self.check} not loaded"
        else:
            what = "run failed"
        where = f" [{self.partition}]" if self.partition else ""
        return f"recdag {self.severity}: {what}{where}"


def payload(row: dict) -> dict:
    """Slack-compatible JSON for one ``quality.alerts`` row (``text`` is the notification fallback)."""
    alert = Alert(**{k: row[k] for k in ("kind", "asset", "check", "partition", "run_id", "severity", "message")})
    return {
        "text": f"{alert.title}: {alert.message}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": alert.title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": alert.message[:2900]}},
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"run `{alert.run_id}` · alert `{row['alert_id']}` · {row['created_at']} UTC"}],
            },
        ],
    }


@dataclass
class DeliveryReport:
    spooled: int = 0
    recorded: int = 0
    delivered: int = 0
    failed: int = 0
    pending: int = 0
    locked: bool = False
    busy: bool = False
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.busy:
            return "another tick is delivering alerts"
        text = f"recorded {self.recorded}, delivered {self.delivered}, failed {self.failed}, pending {self.pending}"
        return text + (" (DuckDB locked by the pipeline: retry next tick)" if self.locked else "")


class AlertSink(dg.ConfigurableResource):
    """Writes alerts to quality.alerts, the log, and the webhook in ``RECDAG_ALERT_WEBHOOK``."""

    webhook_url: str | None = Field(default_factory=settings.alert_webhook_url)
    data_dir: str = Field(default_factory=lambda: str(settings.data_dir()))
    lock_timeout_s: float = 3.0  # a sensor tick must stay short: wait this long for DuckDB, then retry next tick
    http_timeout_s: float = 5.0
    max_deliveries: int = 20  # per flush, so a long outage does not make one tick slow

    @property
    def state_dir(self) -> Path:
        return Path(self.data_dir) / "alerts"

    @property
    def spool_dir(self) -> Path:
        return self.state_dir / "spool"

    @property
    def _pending_marker(self) -> Path:
        # exists while quality.alerts may hold undelivered rows: lets idle ticks skip DuckDB
        return self.state_dir / "UNDELIVERED"

    def _warehouse(self) -> Warehouse:
        return Warehouse(data_dir=self.data_dir, lock_timeout_s=self.lock_timeout_s)

    def raise_alerts(self, alerts: Sequence[Alert], log: Callable[[str], None] | None = None) -> DeliveryReport:
        log = log or dg.get_dagster_logger("recdag.alerts").warning
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        created = utcnow().isoformat()
        for alert in alerts:
            log(f"ALERT {alert.alert_id} {alert.title}: {alert.message}")
            target = self.spool_dir / f"{alert.alert_id}.json"
            if target.exists():
                continue
            tmp = target.with_suffix(".tmp")
            tmp.write_text(json.dumps({"alert_id": alert.alert_id, **asdict(alert), "created_at": created}))
            os.replace(tmp, target)  # atomic: a reader never sees half an alert
        report = self.flush(log)
        report.spooled = len(alerts)
        return report

    def flush(self, log: Callable[[str], None] | None = None) -> DeliveryReport:
        log = log or dg.get_dagster_logger("recdag.alerts").info
        report = DeliveryReport()
        spooled = sorted(self.spool_dir.glob("*.json")) if self.spool_dir.exists() else []
        if not spooled and not (self.webhook_url and self._pending_marker.exists()):
            return report
        with self._exclusive() as acquired:
            if not acquired:
                report.busy = True
                return report
            try:
                undelivered = self._record(spooled, report)
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise
                report.locked = True
                log(f"alerts: DuckDB is locked ({len(spooled)} spooled alerts wait for the next tick)")
                return report
            if self.webhook_url is None:  # no webhook configured: the table and the log are the alert's only homes
                return report
            outcomes = []
            for row in undelivered:
                outcomes.append(self._post(row))
                if outcomes[-1]["unreachable"]:  # endpoint down: the rest waits for the next tick
                    break
            for outcome in outcomes:
                if outcome["error"]:
                    report.failed += 1
                    report.errors.append(outcome["error"])
                else:
                    report.delivered += 1
            try:
                report.pending = self._write_outcomes(outcomes)
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise
                report.locked = True
                report.pending = len(undelivered)
            if report.pending == 0 and not report.locked:
                self._pending_marker.unlink(missing_ok=True)
            if report.failed:
                log(f"alerts: {report.failed} deliveries failed (kept undelivered for the next tick): {report.errors[0]}")
        return report

    def _record(self, spooled: list[Path], report: DeliveryReport) -> list[dict]:
        rows = [json.loads(p.read_text()) for p in spooled]
        with self._warehouse().connect() as con:
            if rows:
                frame = pl.DataFrame(rows, schema={c: pl.Utf8 for c in ALERT_COLUMNS}).with_columns(
                    pl.col("created_at").str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", time_unit="us")
                )
                before = con.execute("SELECT count(*) FROM quality.alerts").fetchone()[0]
                con.register("_alerts", frame.to_arrow())
                con.execute(
                    'INSERT INTO quality.alerts (alert_id, kind, asset, "check", "partition", run_id, severity, message, created_at, attempts) '
                    'SELECT alert_id, kind, asset, "check", "partition", run_id, severity, message, created_at, 0 FROM _alerts '
                    "ON CONFLICT (alert_id) DO NOTHING"
                )
                con.unregister("_alerts")
                report.recorded = con.execute("SELECT count(*) FROM quality.alerts").fetchone()[0] - before
            if self.webhook_url is None:
                undelivered = []
            else:
                undelivered = (
                    con.execute(
                        'SELECT alert_id, kind, asset, "check", "partition", run_id, severity, message, CAST(created_at AS VARCHAR) AS created_at '
                        "FROM quality.alerts WHERE delivered_at IS NULL ORDER BY created_at, alert_id LIMIT $n",
                        {"n": self.max_deliveries},
                    )
                    .pl()
                    .to_dicts()
                )
        for p in spooled:  # recorded (or already present): the table is now the alert's home
            p.unlink(missing_ok=True)
        if rows and self.webhook_url:
            self._pending_marker.parent.mkdir(parents=True, exist_ok=True)
            self._pending_marker.touch()
        return undelivered

    def _post(self, row: dict) -> dict:
        body = json.dumps(payload(row)).encode()
        request = urllib.request.Request(self.webhook_url, data=body, headers={"Content-Type": "application/json"})
        unreachable = False
        try:
            with urllib.request.urlopen(request, timeout=self.http_timeout_s) as resp:
                status = resp.status
            error = None if 200 <= status < 300 else f"HTTP {status}"
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code} from {self.webhook_url}"
        except (urllib.error.URLError, OSError) as exc:
            unreachable = True
            error = f"{type(exc).__name__} posting to {self.webhook_url}: {getattr(exc, 'reason', exc)}"
        return {"alert_id": row["alert_id"], "error": error, "at": utcnow(), "unreachable": unreachable}

    def _write_outcomes(self, outcomes: list[dict]) -> int:
        with self._warehouse().connect() as con:
            if outcomes:
                frame = pl.DataFrame(
                    [{k: o[k] for k in ("alert_id", "error", "at")} for o in outcomes],
                    schema={"alert_id": pl.Utf8, "error": pl.Utf8, "at": pl.Datetime("us")},
                )
                con.register("_outcomes", frame.to_arrow())
                con.execute(
                    "UPDATE quality.alerts AS a SET attempts = coalesce(a.attempts, 0) + 1, "
                    "delivered_at = CASE WHEN o.error IS NULL THEN o.at END, last_error = o.error "
                    "FROM _outcomes AS o WHERE a.alert_id = o.alert_id"
                )
                con.unregister("_outcomes")
            return con.execute("SELECT count(*) FROM quality.alerts WHERE delivered_at IS NULL").fetchone()[0]

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[bool]:
        """One flusher at a time across sensors and processes (a non-blocking file lock)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / ".flush.lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
