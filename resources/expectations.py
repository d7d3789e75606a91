"""Expectation suites: the data contracts of each asset, as Great Expectations 1.x suites.

Contract suites are ERROR severity (blocking checks); anomaly suites are WARN.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import great_expectations.expectations as gxe
from great_expectations.expectations.row_conditions import Column

from recsys.schema import EVENT_TYPES, INTERACTION_SCHEMA

INTERACTION_COLUMNS = list(INTERACTION_SCHEMA)
KEY = ["user_id", "item_id", "ts", "event_type"]


@dataclass
class SuiteSpec:
    """A named list of expectations; the GX resource turns it into a suite inside its context."""

    name: str
    expectations: list = field(default_factory=list)

    def add_expectation(self, expectation) -> None:
        self.expectations.append(expectation)


def raw_interactions_contract(start: date, end: date, rating_range: tuple[float, float] = (0.5, 5.0)) -> SuiteSpec:
    """Columns/types, non-null keys, event types, timestamps inside the window, rating range."""
    suite = SuiteSpec(name="raw_interactions_contract")
    suite.add_expectation(gxe.ExpectTableColumnsToMatchSet(column_set=INTERACTION_COLUMNS, exact_match=False))
    for column, types in {
        "user_id": ["int64", "Int64"],
        "item_id": ["int64", "Int64"],
        "value": ["float64", "Float64"],
        "ts": ["datetime64[us]", "datetime64[ns]", "datetime64"],
    }.items():
        suite.add_expectation(gxe.ExpectColumnValuesToBeInTypeList(column=column, type_list=types))
    for column in ("user_id", "item_id", "event_type", "ts", "event_date"):
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=column))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column="event_type", value_set=list(EVENT_TYPES)))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="user_id", min_value=0))
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="item_id", min_value=0))
    suite.add_expectation(
        gxe.ExpectColumnValuesToBeBetween(
            column="ts",
            min_value=datetime.combine(start, datetime.min.time()),
            max_value=datetime.combine(end + timedelta(days=1), datetime.min.time()),
            strict_max=True,
        )
    )
    suite.add_expectation(
        gxe.ExpectColumnValuesToBeBetween(
            column="value",
            min_value=rating_range[0],
            max_value=rating_range[1],
            row_condition=Column("event_type") == "rate",  # GX 1.9+ condition object (string conditions are deprecated)
        )
    )
    return suite


def raw_interactions_anomalies(volume_bounds: tuple[int, int] | None, max_duplicate_share: float) -> SuiteSpec:
    """WARN: row volume against trailing partitions, duplicate share."""
    suite = SuiteSpec(name="raw_interactions_anomalies")
    if volume_bounds is not None:
        suite.add_expectation(gxe.ExpectTableRowCountToBeBetween(min_value=volume_bounds[0], max_value=volume_bounds[1]))
    suite.add_expectation(gxe.ExpectCompoundColumnsToBeUnique(column_list=KEY, mostly=1.0 - max_duplicate_share))
    return suite


def volume_ratio_suite(max_ratio: float) -> SuiteSpec:
    """WARN: each day's volume within [1/max_ratio, max_ratio] of its trailing partitions' median."""
    suite = SuiteSpec(name="raw_interactions_volume")
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="ratio", min_value=1.0 / max_ratio, max_value=max_ratio))
    return suite


def interactions_contract(check_references: bool = True) -> SuiteSpec:
    """Cleaned interactions: unique events; every referenced item and user exists.

    References are checked on the column ``unknown_ref`` (null, or e.g. "item_id 42" when the item
    is not in raw.items), which the asset fills with a join: a value set of every known id would be
    copied by GX for each batch (minutes at 10M rows); the unexpected values still name the ids."""
    suite = SuiteSpec(name="interactions_contract")
    suite.add_expectation(gxe.ExpectCompoundColumnsToBeUnique(column_list=KEY))
    if check_references:
        suite.add_expectation(gxe.ExpectColumnValuesToBeNull(column="unknown_ref"))
    return suite


def catalog_contract(name: str, key: str) -> SuiteSpec:
    suite = SuiteSpec(name=f"{name}_contract")
    suite.add_expectation(gxe.ExpectColumnToExist(column=key))
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=key))
    suite.add_expectation(gxe.ExpectColumnValuesToBeUnique(column=key))
    suite.add_expectation(gxe.ExpectTableRowCountToBeBetween(min_value=1))
    return suite
