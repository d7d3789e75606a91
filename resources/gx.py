"""Great Expectations 1.x behind a Dagster resource (dagster-ge needs GX < 1.0, so not used).

An ephemeral context per validation; suites come from ``resources/expectations.py``. GX validates
pandas frames, so polars frames are converted here, at that boundary only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import polars as pl

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TQDM_DISABLE", "1")


@dataclass
class ExpectationOutcome:
    expectation: str
    column: str | None
    success: bool
    observed: Any
    unexpected_count: int | None
    unexpected_sample: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "expectation": self.expectation,
            "column": self.column,
            "success": self.success,
            "observed": self.observed,
            "unexpected_count": self.unexpected_count,
            "unexpected_sample": self.unexpected_sample[:5],
        }


@dataclass
class SuiteOutcome:
    suite: str
    success: bool
    outcomes: list[ExpectationOutcome]

    @property
    def failed(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def markdown(self) -> str:
        lines = ["| expectation | column | ok | observed | unexpected | e.g. |", "|---|---|---|---|---|---|"]
        for o in self.outcomes:
            observed = o.observed if not isinstance(o.observed, float) else round(o.observed, 4)
            sample = ", ".join(str(v) for v in o.unexpected_sample[:3]) if not o.success else ""
            lines.append(
                f"| {o.expectation} | {o.column or ''} | {'✅' if o.success else '❌'} | {observed} | "
                f"{o.unexpected_count if o.unexpected_count is not None else ''} | {sample} |"
            )
        return "\n".join(lines)


class GreatExpectationsResource(dg.ConfigurableResource):
    """Runs an expectation suite on a frame with an ephemeral GX context."""

    result_format: str = "SUMMARY"

    def validate(self, frame: pl.DataFrame, suite) -> SuiteOutcome:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = context.data_sources.add_pandas(f"recdag_{suite.name}")
        asset = source.add_dataframe_asset(name=suite.name)
        batch_def = asset.add_batch_definition_whole_dataframe("whole")
        suite = context.suites.add(gx.ExpectationSuite(name=suite.name, expectations=list(suite.expectations)))
        batch = batch_def.get_batch(batch_parameters={"dataframe": _for_gx(frame)})
        result = batch.validate(suite, result_format=self.result_format)
        outcomes = []
        for r in result.results:
            cfg = r.expectation_config
            res = r.result or {}
            outcomes.append(
                ExpectationOutcome(
                    expectation=cfg.type,
                    column=cfg.kwargs.get("column") or (",".join(cfg.kwargs.get("column_list", [])) or None),
                    success=bool(r.success),
                    observed=_plain(res.get("observed_value", res.get("unexpected_percent"))),
                    unexpected_count=res.get("unexpected_count"),
                    unexpected_sample=[_plain(v) for v in (res.get("partial_unexpected_list") or [])],
                    kwargs={k: _plain(v) for k, v in cfg.kwargs.items() if k != "value_set"},
                )
            )
        return SuiteOutcome(suite=suite.name, success=bool(result.success), outcomes=outcomes)


def _for_gx(frame: pl.DataFrame):
    """The pandas frame GX validates: timestamps as datetime64[ns].

    GX's pandas ``column_values.between`` compares datetime64[ns] columns vectorised but maps any other
    datetime unit element by element in Python (polars' microseconds: 9.7 of 16 s of a 2M-row
    ``raw_interactions``), so the unit is converted here, at the boundary, once.
    """
    to_ns = [pl.col(c).dt.cast_time_unit("ns") for c, t in frame.schema.items() if isinstance(t, pl.Datetime) and t.time_unit != "ns"]
    return (frame.with_columns(to_ns) if to_ns else frame).to_pandas()


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        try:
            return value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
