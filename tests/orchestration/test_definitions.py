"""The code location loads: what `dagster dev` and the webserver do first, checked in seconds."""

import subprocess
import sys
from pathlib import Path

import dagster as dg

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_definitions_validate_loadable():
    from orchestration.definitions import defs

    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert {"raw_interactions", "interactions", "split", "evaluation", "recommendations"} <= keys
    for job in ("daily_ingestion", "train_and_evaluate"):
        assert defs.resolve_job_def(job).name == job


def test_dagster_cli_validates_the_workspace():
    """`dagster definitions validate` on workspace.yaml, as a deployment would load it."""
    exe = Path(sys.executable).parent / "dagster"
    proc = subprocess.run(
        [str(exe), "definitions", "validate", "-w", "workspace.yaml"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
