"""`python -m orchestration.run`: materialize the default pipeline as `make run` does, and explain it.

Runs through the Dagster instance at $DAGSTER_HOME (so the UI shows every run afterwards): the ingestion job over
the dataset's whole partition range as one run (single-run backfill), then the train-and-evaluate job.

The console gets one line per finished step (name, ok / FAILED / skipped, seconds, what it produced), a live
progress display on a terminal (steps of the job, partitions materialized, training epochs) and, at the end, the
summary of orchestration/summary.py. Dagster's full event log (every DEBUG event, plus anything the steps print)
goes to ``$RECDAG_DATA_DIR/logs/run-<timestamp>.log``, with ``latest.log`` pointing at the newest one.

How, with public Dagster API only: Dagster's console logger is turned down through the run config
(``loggers.console.config.log_level``), and each run's events arrive as ``dagster.EventLogEntry`` objects through
``DagsterInstance.add_event_listener`` for a run id chosen before ``execute_in_process`` starts.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TextIO

import dagster as dg

from orchestration.jobs import PIPELINE_STAGES
from orchestration.recovery import StopOnSignal, recover_stale_runs, worker_tags
from orchestration.summary import Outputs, format_pooled, format_summary, load_pooled, load_summary
from orchestration.tags import BACKTEST_TAG, partition_range_tags
from resources import settings

# Dagster's colored console logger would print every event (~600 lines for ML-100K); the event listener below
# writes them all to the log file instead, so the console logger only keeps what is above CRITICAL (nothing).
QUIET_CONSOLE_LOGGER = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
# Per-epoch training messages of two_tower ("two_tower epoch 3/6 ..."), the PI2I scorer ("prs epoch 2/4 ...") and
# the sequence ranker ("sequence_ranker: epoch 5/20 loss ..."); a message without a total gets a bar with no end.
EPOCH_MESSAGE = re.compile(r"^(?P<model>[A-Za-z0-9_]+):? epoch (?P<epoch>\d+)(?:/(?P<total>\d+))?\b(?P<rest>.*)$")
# Without a terminal, a training step prints its last epoch, and in between at most one line this often.
PLAIN_PROGRESS_EVERY_S = 10.0
ET = dg.DagsterEventType


def error_headline(error) -> str:
    """The innermost cause's message of a Dagster SerializableErrorInfo (the user's exception, not the wrapper)."""
    while error is not None and error.cause is not None:
        error = error.cause
    if error is None:
        return "unknown error"
    text = error.message.strip()
    return text if len(text) <= 400 else text[:399] + "…"


class EventLogFile:
    """The full event log of this invocation: every Dagster event at DEBUG, with errors' full tracebacks."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = open(path, "a", encoding="utf-8", buffering=1)  # closed by close()

    def entry(self, entry: dg.EventLogEntry) -> None:
        when = datetime.fromtimestamp(entry.timestamp).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        kind = entry.dagster_event_type.value if entry.dagster_event_type is not None else "LOG"
        level = logging.getLevelName(entry.level)
        self._file.write(
            f"{when} - {level} - {entry.job_name or '-'} - {entry.run_id} - {entry.step_key or '-'} - {kind} - {entry.message}\n"
        )
        error = entry.error_info
        if entry.dagster_event_type == ET.STEP_FAILURE:
            error = entry.get_dagster_event().step_failure_data.error or error
        if error is not None:
            self._file.write("    " + error.to_string().replace("\n", "\n    ").rstrip() + "\n")

    def note(self, source: str, text: str) -> None:
        when = datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        self._file.write(f"{when} - {source} - {text}\n")

    def close(self) -> None:
        self._file.close()


class LineTee(io.TextIOBase):
    """Stands in for sys.stdout/sys.stderr while a job runs: each line a library prints goes to ``sink``.

    It has no file descriptor, so Dagster's in-process compute-log capture leaves it alone and the lines
    reach the log file (and the console, above the progress display) instead of interleaving with it.
    """

    def __init__(self, sink: Callable[[str], None]):
        super().__init__()
        self._sink = sink
        self._buffer = ""

    @property
    def encoding(self) -> str:
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        self._buffer += text
        *lines, self._buffer = re.split(r"\r\n|\r|\n", self._buffer)
        for line in lines:
            if line.strip():
                self._sink(line.rstrip())
        return len(text)

    def flush(self) -> None:
        pass

    def drain(self) -> None:
        if self._buffer.strip():
            self._sink(self._buffer.rstrip())
        self._buffer = ""


@dataclass
class StepState:
    started: float
    partitions: int = 0
    checks_passed: int = 0
    checks_failed: list[str] = field(default_factory=list)
    task: object | None = None  # rich TaskID
    last_plain_progress: float = 0.0  # monotonic time of the last plain progress line (0: at the step's start)
    trainings: int = 0  # models trained in this step so far (two_tower and PI2I train one per fold)


class Reporter:
    """Turns a run's events into the console lines and progress display; writes every event to the log file."""

    def __init__(self, log: EventLogFile, out: TextIO, interactive: bool):
        self.log = log
        self.out = out
        self.interactive = interactive
        self.progress = None
        self.console = None
        if interactive:
            from rich.console import Console

            self.console = Console(file=out, highlight=False)
        self._reset()

    def _reset(self) -> None:
        self.steps: dict[str, StepState] = {}
        self.failures = 0
        self.run_failure: str | None = None
        self.n_partitions = self.n_steps = 0
        self.job_task = None
        self.steps_done = 0
        self.not_run: list[str] = []  # steps Dagster did not execute because an upstream step failed

    # --- job lifecycle ----------------------------------------------------------------------------
    def begin_job(self, name: str, n_steps: int, n_partitions: int) -> None:
        self._reset()
        self.n_partitions, self.n_steps = n_partitions, n_steps
        if self.interactive:
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(bar_width=28),
                TextColumn("{task.fields[count]}"),
                TimeElapsedColumn(),
                TextColumn("[dim]{task.fields[info]}"),
                console=self.console,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self.progress.start()
            self.job_task = self.progress.add_task(name, total=n_steps, count=f"0/{n_steps} steps", info="")

    def end_job(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        if self.not_run:
            self.say(
                f"  skipped {len(self.not_run)} steps not run because an upstream step failed: {', '.join(self.not_run)}", style="yellow"
            )

    def _advance(self) -> None:
        if self.progress is not None and self.job_task is not None:
            self.steps_done += 1
            self.progress.update(self.job_task, completed=self.steps_done, count=f"{self.steps_done}/{self.n_steps} steps")

    def say(self, text: str, style: str | None = None) -> None:
        if self.interactive:
            target = self.progress.console if self.progress is not None else self.console
            target.print(text, style=style, markup=False, highlight=False, soft_wrap=True)
        else:
            print(text, file=self.out, flush=True)

    def stray(self, source: str, line: str) -> None:
        """A line a library printed while a step ran: into the log, and dimmed onto the console."""
        self.log.note(source, line)
        self.say(f"    | {line}", style="dim")

    # --- events -----------------------------------------------------------------------------------
    def __call__(self, entry: dg.EventLogEntry) -> None:
        self.log.entry(entry)
        try:
            self._handle(entry)
        except Exception as exc:  # the display must never break a run
            self.log.note("recdag.run", f"progress display error: {exc!r}")

    def _handle(self, entry: dg.EventLogEntry) -> None:
        kind, step = entry.dagster_event_type, entry.step_key
        if kind == ET.STEP_START and step:
            state = self.steps[step] = StepState(started=entry.timestamp)
            if self.progress is not None:
                state.task = self.progress.add_task(f"  {step}", total=None, count="", info="")
        elif (
            kind == ET.ASSET_MATERIALIZATION
            and step in self.steps
            and entry.get_dagster_event().partition
            and self.n_partitions > 1
            # a multi-asset step (raw_interactions also writes ingestion_log) counts its main asset's partitions only
            and entry.get_dagster_event().asset_key.to_user_string() == step
        ):
            state = self.steps[step]
            state.partitions += 1
            if state.task is not None:
                total = self.n_partitions or None
                self.progress.update(
                    state.task, total=total, completed=state.partitions, count=f"{state.partitions}/{total or '?'} partitions"
                )
        elif kind == ET.ASSET_CHECK_EVALUATION and step in self.steps:
            check = entry.get_dagster_event().asset_check_evaluation_data
            if check.passed:
                self.steps[step].checks_passed += 1
            else:
                self.steps[step].checks_failed.append(f"{check.check_name} ({check.severity.value})")
        elif kind in (ET.STEP_SUCCESS, ET.STEP_FAILURE, ET.STEP_SKIPPED) and step:
            self._finish(entry)
        elif kind == ET.RUN_FAILURE:
            self.run_failure = entry.message
        elif kind is None and step:
            message = entry.user_message
            if entry.level >= logging.ERROR and message.rstrip().endswith("Not executing."):
                self.not_run.append(step)
                self._advance()
            else:
                match = EPOCH_MESSAGE.match(message)
                if match and step in self.steps:
                    self._epoch(step, match)

    def _epoch(self, step: str, match: re.Match) -> None:
        state = self.steps[step]
        epoch, total = int(match["epoch"]), int(match["total"]) if match["total"] else None
        count = f"epoch {epoch}/{total}" if total else f"epoch {epoch}"
        info = match["rest"].strip()
        if epoch == 1:
            state.trainings += 1
        model = match["model"] + (f" (model {state.trainings})" if state.trainings > 1 else "")
        if state.task is not None:
            self.progress.update(state.task, description=f"  {step} · {model}", total=total, completed=epoch, count=count, info=info)
        elif not self.interactive:
            now = time.monotonic()
            if not state.last_plain_progress:
                state.last_plain_progress = now
            if (total and epoch == total) or now - state.last_plain_progress >= PLAIN_PROGRESS_EVERY_S:
                state.last_plain_progress = now
                self.say(f"  ...     {step:<24} {model} {count} {info}")

    def _finish(self, entry: dg.EventLogEntry) -> None:
        step, kind = entry.step_key, entry.dagster_event_type
        state = self.steps.pop(step, None)
        status = {ET.STEP_SUCCESS: "ok", ET.STEP_FAILURE: "FAILED", ET.STEP_SKIPPED: "skipped"}[kind]
        seconds = f"{entry.timestamp - state.started:6.1f}s" if state is not None else " " * 7
        parts = []
        if state is not None:
            if state.partitions and self.n_partitions > 1:  # a one-partition (cut-off) run says so in its header
                parts.append(f"{state.partitions}/{self.n_partitions or '?'} partitions")
            if state.checks_passed or state.checks_failed:
                checks = f"checks: {state.checks_passed} passed"
                if state.checks_failed:
                    checks += f", {len(state.checks_failed)} failed: " + ", ".join(state.checks_failed)
                parts.append(checks)
            if state.task is not None:
                self.progress.remove_task(state.task)
        self._advance()
        style = {"ok": "green", "FAILED": "bold red", "skipped": "yellow"}[status]
        self.say(f"  {status:<7} {step:<24} {seconds}  {'; '.join(parts)}".rstrip(), style=style)
        if kind == ET.STEP_FAILURE:
            self.failures += 1
            error = entry.get_dagster_event().step_failure_data.error
            self.say(f"          error: {error_headline(error)}", style="red")
            self.say(f"          full traceback: {self.log.path}", style="red")


def run_job(
    name: str,
    instance: dg.DagsterInstance,
    reporter: Reporter,
    partition_range: tuple[str, str] | None = None,
    n_partitions: int = 0,
    partition_key: str | None = None,
    extra_tags: dict[str, str] | None = None,
    stopper: StopOnSignal | None = None,
) -> dg.ExecuteInProcessResult:
    from orchestration.definitions import defs

    job = defs.resolve_job_def(name)
    # One run for the whole range: the partitioned assets have a single-run backfill policy, and these two tags
    # (Dagster's documented "dagster/asset_partition_range_start/_end") make execute_in_process run it that way.
    tags = partition_range_tags(*partition_range) if partition_range is not None else {}
    tags |= (extra_tags or {}) | worker_tags()  # this process's host and pid: a later `make run` can tell if it died
    run_id = str(uuid.uuid4())
    if stopper is not None:
        stopper.run_id = run_id
    instance.add_event_listener(run_id, reporter)
    if partition_range:
        scope = f"{n_partitions} day-partitions {partition_range[0]} .. {partition_range[1]} as one run"
    elif partition_key:
        scope = f"cut-off {partition_key} (test window from that day)"
    else:
        scope = "one run"
    reporter.say(f"{name}: {scope} (run {run_id})", style="bold")
    reporter.log.note("recdag.run", f"job {name} run {run_id} tags {tags}")

    saved = sys.stdout, sys.stderr
    tees = LineTee(lambda line: reporter.stray("stdout", line)), LineTee(lambda line: reporter.stray("stderr", line))
    started = time.monotonic()
    reporter.begin_job(name, len(job.graph.nodes), n_partitions)
    try:
        sys.stdout, sys.stderr = tees
        result = job.execute_in_process(
            run_config=QUIET_CONSOLE_LOGGER, instance=instance, tags=tags, run_id=run_id, partition_key=partition_key, raise_on_error=False
        )
    finally:
        for tee in tees:
            tee.drain()
        sys.stdout, sys.stderr = saved
        reporter.end_job()
    elapsed = time.monotonic() - started
    if result.success:
        reporter.say(f"{name} succeeded in {elapsed:.1f}s", style="bold green")
    else:
        why = "" if reporter.failures else f": {reporter.run_failure or 'see the log'}"
        reporter.say(f"{name} FAILED in {elapsed:.1f}s{why} (full log: {reporter.log.path})", style="bold red")
    reporter.say("")
    return result


def open_log(data_dir: Path) -> tuple[EventLogFile, Path]:
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / f"run-{datetime.now():%Y%m%d-%H%M%S}.log"
    latest = logs / "latest.log"
    log = EventLogFile(path)
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    try:
        latest.symlink_to(path.name)
    except OSError:  # no symlinks here: main() copies the finished log instead
        pass
    return log, latest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default=",".join(PIPELINE_STAGES), help="comma-separated jobs to run, in order")
    parser.add_argument("--plain", action="store_true", help="plain lines, no progress display (the default when stdout is not a terminal)")
    parser.add_argument(
        "--backtest",
        type=int,
        default=0,
        metavar="N",
        help="rolling-origin backtest: train and evaluate the newest N cut-offs, one run each (tagged recdag/backtest), then pool them",
    )
    args = parser.parse_args(argv)
    from assets.partitions import CUTOFF_WINDOW_DAYS, LIVE, cutoff_keys, daily_partitions, latest_cutoff

    data_dir = settings.data_dir()
    log, latest = open_log(data_dir)
    out = sys.stdout
    reporter = Reporter(log, out, interactive=out.isatty() and not args.plain)
    reporter.say(f"recdag: dataset {settings.dataset_spec()}, data {data_dir}, Dagster home {os.environ.get('DAGSTER_HOME', '?')}")
    reporter.say(f"Full Dagster event log (DEBUG): {log.path}")
    reporter.say("")

    instance = dg.DagsterInstance.get()
    if LIVE:  # a landing folder: its days become partitions first (orchestration/landing.py)
        from orchestration.landing import register_landed

        register_landed(instance, log=reporter.say)
    keys = daily_partitions.get_partition_keys(dynamic_partitions_store=instance)  # live: in the order they were added
    cutoffs = [latest_cutoff(instance)]
    backtest_tags = {}
    if args.backtest:
        available = cutoff_keys(instance)
        cutoffs = available[-args.backtest :]
        backtest_tags = {BACKTEST_TAG: f"{datetime.now():%Y%m%d-%H%M%S}-{len(cutoffs)}"}
        reporter.say(
            f"Backtest: {len(cutoffs)} of {len(available)} cut-offs ({cutoffs[0]} .. {cutoffs[-1]}), test windows of "
            f"{CUTOFF_WINDOW_DAYS} days, one train_and_evaluate run each, tag {BACKTEST_TAG}={backtest_tags[BACKTEST_TAG]}"
        )
        reporter.say("")
    # SIGTERM / Ctrl-C stop this process within seconds; runs a killed `make run` left STARTED are failed first.
    stopper = StopOnSignal(instance, lambda text: log.note("recdag.run", text))
    stopper.install()
    if recover_stale_runs(instance, reporter.say):
        reporter.say("")
    eval_run_id, status = None, 0
    try:
        for stage in args.stages.split(","):
            if stage == "daily_ingestion":
                result = run_job(stage, instance, reporter, (keys[0], keys[-1]), len(keys), stopper=stopper)
            elif stage == "train_and_evaluate":
                for cutoff in cutoffs:
                    result = run_job(stage, instance, reporter, partition_key=cutoff, extra_tags=backtest_tags, stopper=stopper)
                    eval_run_id = result.run_id
                    if not result.success or stopper.signum:
                        break
            else:
                result = run_job(stage, instance, reporter, stopper=stopper)
            if stopper.signum:
                raise KeyboardInterrupt
            if not result.success:
                status = 1
                break
    except (KeyboardInterrupt, dg.DagsterExecutionInterruptedError):
        name = signal.Signals(stopper.signum).name if stopper.signum else "an interrupt"
        reporter.say(f"stopped by {name}", style="bold red")
        stopper.finished()
        stopper.settle()
        return stopper.exit_status if stopper.signum else 130
    finally:
        stopper.uninstall()
        log.close()
        if not latest.exists():
            latest.write_bytes(log.path.read_bytes())
    summary = load_summary(Outputs(data_dir, log.path, latest), eval_run_id)
    reporter.say(format_summary(summary))
    if args.backtest and eval_run_id is not None:
        reporter.say(format_pooled(load_pooled(data_dir, eval_run_id)))
    return status


if __name__ == "__main__":
    sys.exit(main())
