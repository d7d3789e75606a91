"""Crashes never wedge the deployment: runs whose process is gone, pool slots they hold, and stopping `make run`.

- ``worker_tags()``: `make run` tags each of its runs with this host and its own pid (plus the process start
  time, so a recycled pid is not taken for the run's process).
- ``worker_liveness(instance, run)``: is the process executing ``run`` still there? From those tags, else from
  the pid of the run's RUN_START event (the run worker that `make ui`'s code server launched, on this host:
  the instance is a local SQLite home), else, with no pid at all, "gone" only after ``NO_PID_STALE_AFTER_S``
  without an event. ``None`` means "cannot tell" (another host): such runs are left alone.
- ``recover_stale_runs(instance, say)``: what `make run` does before its first run. Each STARTING / STARTED /
  CANCELING run whose process is gone is reported FAILURE (CANCELED when it was being canceled) and its pool
  slots are freed; so are the slots still held by finished runs (a SIGKILLed run never released its own). One
  line per cleaned run.
- ``stale_run_sensor`` (``recover_stale_runs``, running by default): the same every minute under `make ui`'s
  daemon, e.g. for a `make run` killed while the UI is up. Dagster's own monitoring covers the rest: the code
  server fails a run whose worker dies under it, and ``run_monitoring`` (orchestration/dagster.yaml) fails
  runs stuck STARTING / CANCELING and frees the slots of ended runs. (Dagster's worker health check for
  STARTED runs needs a launcher that supports it; the default one does not, and a custom launcher would need
  private Dagster API.)
- ``StopOnSignal``: SIGTERM / SIGINT stop `make run` within seconds. Inside a step, Dagster turns the signal
  into an interruption of the step (the run fails, the step's DuckDB transaction rolls back); in between
  steps, where Dagster only records it (a step waiting for a pool slot would wait forever), a watchdog thread
  sees the signal through ``signal.set_wakeup_fd`` and, after ``grace_s``, marks the current run CANCELED,
  frees its slots and exits the process with 128 + the signal number.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable

import dagster as dg

WORKER_HOST_TAG = "recdag/worker_host"
WORKER_PID_TAG = "recdag/worker_pid"  # "<pid>:<start time in clock ticks since boot>" (Linux) or "<pid>:"
NO_PID_STALE_AFTER_S = 3600.0  # a run with no pid anywhere counts as gone after this long without an event
RECOVERABLE = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def _start_time(pid: int) -> str:
    """The process's start time from /proc (clock ticks since boot); empty where /proc is missing."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            stat = handle.read()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the command name in (...) may hold spaces


def worker_tags() -> dict[str, str]:
    pid = os.getpid()
    return {WORKER_HOST_TAG: socket.gethostname(), WORKER_PID_TAG: f"{pid}:{_start_time(pid)}"}


def pid_alive(pid: int, start_time: str = "") -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    if start_time:
        now = _start_time(pid)
        if now and now != start_time:
            return False  # the pid was recycled by another process
    try:  # a zombie (exited, not yet reaped by its parent) is gone too
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _run_worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid of the process that started executing the run (its RUN_START event), else of the launched one."""
    for kind in (dg.DagsterEventType.RUN_START, dg.DagsterEventType.ENGINE_EVENT):
        records = instance.get_records_for_run(run_id, of_type=kind, limit=50).records
        for record in records:
            event = record.event_log_entry.dagster_event
            if kind == dg.DagsterEventType.RUN_START and event is not None and event.pid:
                return event.pid
            metadata = getattr(event.event_specific_data, "metadata", None) if event is not None else None
            if metadata and "pid" in metadata:
                return int(metadata["pid"].value)
    return None


def worker_liveness(instance: dg.DagsterInstance, run: dg.DagsterRun) -> tuple[bool | None, str]:
    """(alive, why): True / False, or None when it cannot be told from here."""
    tags = run.tags
    if WORKER_PID_TAG in tags:
        host = tags.get(WORKER_HOST_TAG, "?")
        pid_text, _, start = tags[WORKER_PID_TAG].partition(":")
        if host != socket.gethostname():
            return None, f"its process {pid_text} runs on host {host}"
        alive = pid_alive(int(pid_text), start)
        return alive, f"process {pid_text} {'is running' if alive else 'is gone'}"
    pid = _run_worker_pid(instance, run.run_id)
    if pid is not None:
        alive = pid_alive(pid)
        return alive, f"run worker {pid} {'is running' if alive else 'is gone'}"
    records = instance.get_records_for_run(run.run_id, limit=1, ascending=False).records
    last = records[0].event_log_entry.timestamp if records else None
    if last is None:
        record = instance.get_run_record_by_id(run.run_id)
        last = record.update_timestamp.timestamp() if record is not None else time.time()
    idle = time.time() - last
    if idle > NO_PID_STALE_AFTER_S:
        return False, f"no pid recorded and no event for {idle / 60:.0f} min"
    return None, "no pid recorded"


def free_slots(instance: dg.DagsterInstance, run_id: str) -> None:
    if instance.event_log_storage.supports_global_concurrency_limits:
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)


def recover_stale_runs(instance: dg.DagsterInstance, say: Callable[[str], None]) -> list[str]:
    """Fail the runs whose process is gone and free their pool slots (and those of finished runs); their ids."""
    cleaned = []
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=RECOVERABLE)):
        run = record.dagster_run
        alive, why = worker_liveness(instance, run)
        if alive is not False:
            continue
        message = f"recdag: the process of this run is gone ({why}); marked finished and its pool slots freed."
        if run.status == dg.DagsterRunStatus.CANCELING:
            instance.report_run_canceled(run, message)
            status = "CANCELED"
        else:
            instance.report_run_failed(run, message)
            status = "FAILURE"
        free_slots(instance, run.run_id)
        cleaned.append(run.run_id)
        say(f"recovered stale run {run.run_id} ({run.job_name}, was {run.status.value}): {why}; now {status}, pool slots freed")
    if instance.event_log_storage.supports_global_concurrency_limits:
        for run_id in instance.event_log_storage.get_concurrency_run_ids():
            run = instance.get_run_by_id(run_id)
            if run is None or run.is_finished:
                free_slots(instance, run_id)
                if run_id not in cleaned:
                    state = "deleted" if run is None else run.status.value
                    say(f"freed the pool slots still held by run {run_id} ({state})")
    return cleaned


@dg.sensor(
    name="recover_stale_runs",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Fails the runs whose process is gone (a SIGKILLed `make run`, a run worker killed while the UI was down) and "
        "frees their pool slots, so no later run waits forever on a slot a dead run holds (orchestration/recovery.py)."
    ),
)
def stale_run_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    lines: list[str] = []
    recover_stale_runs(context.instance, lines.append)
    for line in lines:
        context.log.warning(line)
    return dg.SkipReason("; ".join(lines) or "no stale runs")


class StopOnSignal:
    """SIGTERM / SIGINT end `make run` within ``grace_s`` seconds, with no run left STARTED (module docstring)."""

    def __init__(self, instance: dg.DagsterInstance, note: Callable[[str], None], grace_s: float = 5.0):
        self.instance = instance
        self.note = note  # a line into the run log
        self.grace_s = grace_s
        self.signum: int | None = None
        self.run_id: str | None = None  # the run executing now
        self._finished = threading.Event()
        self._read, self._write = socket.socketpair()

    def install(self) -> None:
        """In the main thread, before any run."""
        self._write.setblocking(False)
        self._previous_fd = signal.set_wakeup_fd(self._write.fileno(), warn_on_full_buffer=False)
        self._previous = {signum: signal.signal(signum, self._handler) for signum in (signal.SIGTERM, signal.SIGINT)}
        threading.Thread(target=self._watch, name="recdag-stop-on-signal", daemon=True).start()

    def uninstall(self) -> None:
        """In the main thread, when done: the previous handlers back, no forced exit any more."""
        self.finished()
        signal.set_wakeup_fd(self._previous_fd)
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    @property
    def exit_status(self) -> int:
        return 128 + (self.signum or 0)

    def finished(self) -> None:
        """The main thread has wound down by itself: no forced exit any more."""
        self._finished.set()

    def _handler(self, signum: int, _frame) -> None:  # only while no Dagster execution has replaced it
        self.signum = self.signum or signum
        raise KeyboardInterrupt(signal.Signals(signum).name)

    def _watch(self) -> None:
        deadline = None
        while not self._finished.is_set():
            self._read.settimeout(None if deadline is None else max(deadline - time.monotonic(), 0.01))
            try:
                data = self._read.recv(64)
            except TimeoutError:
                break  # grace period over
            received = [b for b in data if b in (signal.SIGTERM, signal.SIGINT)]
            if not received:
                continue
            if deadline is not None:
                break  # a second signal: stop now
            self.signum = self.signum or received[0]
            deadline = time.monotonic() + self.grace_s
        if not self._finished.is_set():
            self._force()

    def settle(self) -> None:
        """The current run, unless it finished: marked CANCELED; its pool slots freed; a line in the run log."""
        name = signal.Signals(self.signum or signal.SIGTERM).name
        run_id, state = self.run_id, "finished"
        if run_id is not None:
            run = self.instance.get_run_by_id(run_id)
            if run is not None and not run.is_finished:
                self.instance.report_run_canceled(run, f"recdag: `make run` was stopped by {name}.")
                state = "marked CANCELED"
            elif run is not None:
                state = run.status.value
            free_slots(self.instance, run_id)
        with contextlib.suppress(Exception):  # the log may be closed already
            self.note(f"stopped by {name}: run {run_id} {state}, its pool slots freed")

    def _force(self) -> None:
        try:
            self.settle()
            print(f"\nrecdag: stopped by {signal.Signals(self.signum or signal.SIGTERM).name}", flush=True)
        finally:
            os._exit(self.exit_status)
