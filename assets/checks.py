"""Turning GX suite outcomes into Dagster check results and rows in quality.check_results."""

from __future__ import annotations

import dagster as dg

from resources.gx import SuiteOutcome
from resources.warehouse import Warehouse


def check_result(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    asset: str,
    check: str,
    outcome: SuiteOutcome,
    severity: dg.AssetCheckSeverity,
    partition: str | None,
    extra: dict | None = None,
) -> dg.AssetCheckResult:
    """One Dagster check result from a suite outcome, also recorded in quality.check_results."""
    details = {"suite": outcome.suite, "failed": [o.as_dict() for o in outcome.failed], **(extra or {})}
    warehouse.record_check(asset, check, partition, outcome.success, severity.value, details, context.run.run_id)
    failed_names = ", ".join(f"{o.expectation}({o.column or ''})" for o in outcome.failed)
    return dg.AssetCheckResult(
        check_name=check,
        passed=outcome.success,
        severity=severity,
        description=("all expectations met" if outcome.success else f"failed: {failed_names}"),
        metadata={
            "expectations": dg.MetadataValue.md(outcome.markdown()),
            "n_failed": len(outcome.failed),
            "partition": partition or "",
            **{k: v for k, v in (extra or {}).items() if isinstance(v, (int, float, str))},
        },
    )


def plain_check_result(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    asset: str,
    check: str,
    passed: bool,
    severity: dg.AssetCheckSeverity,
    partition: str | None,
    description: str,
    details: dict,
) -> dg.AssetCheckResult:
    """A check computed without GX (e.g. from run statistics), recorded the same way."""
    warehouse.record_check(asset, check, partition, passed, severity.value, {"description": description, **details}, context.run.run_id)
    return dg.AssetCheckResult(
        check_name=check,
        passed=passed,
        severity=severity,
        description=description,
        metadata={k: v for k, v in details.items() if isinstance(v, (int, float, str))},
    )
