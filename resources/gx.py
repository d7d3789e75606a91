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


def _no_batch_fingerprint() -> None:
    """GX's pandas engine hashes every row of a batch under 1 GB (``hash_pandas_object`` + md5) for a
    ``pandas_data_fingerprint`` batch marker, each time a batch is loaded (once per get_batch and per
    suite validated): about 6 of 60 s of a 10M-row ingestion. The marker is metadata nobody here
    reads and no expectation depends on it, so the threshold is set to 0 (never hash)."""
    from great_expectations.execution_engine import pandas_execution_engine

    pandas_execution_engine.HASH_THRESHOLD = 0


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
        return self.validate_many(frame, [suite])[0]

    def validate_many(self, frame: pl.DataFrame, suites: list) -> list[SuiteOutcome]:
        """Every suite on ``frame``, converted to pandas once, with only the columns the suites read.

        One GX context, one batch; each suite is validated on it in turn and reported on its own."""
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        _no_batch_fingerprint()
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        name = "_".join(s.name for s in suites)
        source = context.data_sources.add_pandas(f"recdag_{name}")
        asset = source.add_dataframe_asset(name=name)
        batch_def = asset.add_batch_definition_whole_dataframe("whole")
        columns, typed = needed_columns(suites, frame.columns)
        batch = batch_def.get_batch(batch_parameters={"dataframe": _for_gx(frame, columns, keep_strings=typed)})
        return [self._run(context, batch, spec) for spec in suites]

    def _run(self, context, batch, spec) -> SuiteOutcome:
        import copy

        import great_expectations as gx

        # copies: an expectation object belongs to one suite, and a spec may be validated again
        suite = context.suites.add(gx.ExpectationSuite(name=spec.name, expectations=[copy.copy(e) for e in spec.expectations]))
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


# expectations that read no column (the row count is the same whichever columns the frame keeps)
_TABLE_LEVEL = {"ExpectTableRowCountToBeBetween", "ExpectTableRowCountToEqual"}


_TYPE_CHECKS = {"ExpectColumnValuesToBeOfType", "ExpectColumnValuesToBeInTypeList"}


def needed_columns(suites: list, columns: list[str]) -> tuple[list[str], set[str]]:
    """The columns of ``columns`` that ``suites`` read, in frame order (all of them when unsure),
    and the columns whose dtype an expectation checks (their strings stay Python objects).

    Column and column-list expectations read their columns (and their row condition's); a
    non-exact ``ExpectTableColumnsToMatchSet`` reads the names of its set (a column it expects and
    the frame lacks stays missing, so the check still fails). An exact column-set match, an
    ordered column list, a string row condition or any expectation not known here keeps every
    column: dropping columns must never change an outcome."""
    need: set[str] = set()
    typed = {e.column for spec in suites for e in spec.expectations if type(e).__name__ in _TYPE_CHECKS}
    everything = (list(columns), typed)
    for spec in suites:
        for e in spec.expectations:
            kind = type(e).__name__
            if kind == "ExpectTableColumnsToMatchSet":
                if getattr(e, "exact_match", True) is not False:
                    return everything
                need.update(e.column_set)
            elif getattr(e, "column", None) is not None:
                need.add(e.column)
            elif getattr(e, "column_list", None) is not None:
                need.update(e.column_list)
            elif kind not in _TABLE_LEVEL:
                return everything
            cond = getattr(e, "row_condition", None)
            if cond is not None:
                cols = _condition_columns(cond)
                if cols is None:
                    return everything
                need.update(cols)
    kept = [c for c in columns if c in need]
    return (kept or list(columns[:1])), typed  # a row count needs some column to count


def _condition_columns(cond) -> set[str] | None:
    """Column names a GX row-condition object refers to; None for a string/pass-through condition."""
    from great_expectations.expectations.row_conditions import Column, PassThroughCondition

    if isinstance(cond, (str, PassThroughCondition)):
        return None
    if isinstance(cond, Column):
        return {cond.name}
    found: set[str] = set()
    for value in vars(cond).values():
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if hasattr(v, "__dict__") and not isinstance(v, (str, int, float, bool)):
                sub = _condition_columns(v)
                if sub is None:
                    return None
                found |= sub
    return found


def _for_gx(frame: pl.DataFrame, columns: list[str] | None = None, keep_strings: set[str] = frozenset()):
    """The pandas frame GX validates: ``columns`` only, timestamps as datetime64[ns], strings as categoricals.

    GX's pandas ``column_values.between`` compares datetime64[ns] columns vectorised but maps any other
    datetime unit element by element in Python (polars' microseconds: 9.7 of 16 s of a 2M-row
    ``raw_interactions``), so the unit is converted here, at the boundary, once. Strings become
    pandas categoricals (codes + a small dictionary) instead of one Python object per row; GX's
    null, set, uniqueness and row-condition checks compare their values the same way. Columns in
    ``keep_strings`` (a dtype expectation reads them) stay strings. Numeric and datetime[ns] columns
    without nulls are handed over as their numpy buffers (no copy); every other column converts as
    ``Series.to_pandas`` does, so each column has the dtype ``DataFrame.to_pandas`` would give it.
    """
    import pandas as pd

    if columns is not None and list(columns) != frame.columns:
        frame = frame.select(columns)
    casts = []
    for c, t in frame.schema.items():
        if isinstance(t, pl.Datetime) and t.time_unit != "ns":
            casts.append(pl.col(c).dt.cast_time_unit("ns"))
        elif t == pl.Utf8 and c not in keep_strings:
            casts.append(pl.col(c).cast(pl.Categorical))
    if casts:
        frame = frame.with_columns(casts)
    out = {}
    for name, series in frame.to_dict().items():
        if series.null_count() == 0 and (series.dtype.is_integer() or series.dtype.is_float() or series.dtype == pl.Datetime("ns")):
            out[name] = pd.Series(series.to_numpy(), name=name, copy=False)
        else:
            out[name] = series.to_pandas()
    return pd.DataFrame(out, copy=False)


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
