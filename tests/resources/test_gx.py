"""The GX resource converts a frame once, with only the columns its suites read, and reports the
same outcomes (failures and their unexpected values included) as validating the whole frame."""

import copy
from datetime import date, datetime

import polars as pl

from recsys.schema import INTERACTION_SCHEMA
from resources import expectations
from resources.gx import GreatExpectationsResource, _for_gx, needed_columns


def _dirty_interactions() -> pl.DataFrame:
    rows = {
        "user_id": [1, 2, 2, 3, None, 5],
        "item_id": [10, 20, 20, 30, 40, 50],
        "event_type": ["view", "rate", "rate", "bogus", "view", None],
        "value": [1.0, 4.0, 4.0, 1.0, 1.0, 1.0],
        "ts": [
            datetime(2017, 11, 25, 1),
            datetime(2017, 11, 25, 2),
            datetime(2017, 11, 25, 2),
            datetime(2017, 11, 26),
            datetime(2017, 11, 25),
            datetime(2017, 11, 25),
        ],
        "event_date": [date(2017, 11, 25)] * 6,
        "session_id": [None] * 6,
        "source": ["t"] * 6,
        "seq": [1, 2, 3, 4, 5, 6],
    }
    frame = pl.DataFrame(rows, schema=INTERACTION_SCHEMA)
    return frame.with_columns(pl.when(pl.col("seq") == 3).then(9.0).otherwise(pl.col("value")).alias("value"))  # rating 9 of a rate


def _full_validate(frame: pl.DataFrame, spec):
    """The previous behaviour: every column, strings as Python objects."""
    import great_expectations as gx

    ctx = gx.get_context(mode="ephemeral")
    asset = ctx.data_sources.add_pandas("p").add_dataframe_asset(name="a")
    batch = asset.add_batch_definition_whole_dataframe("w").get_batch(
        batch_parameters={"dataframe": frame.with_columns(pl.col("ts").dt.cast_time_unit("ns")).to_pandas()}
    )
    suite = ctx.suites.add(gx.ExpectationSuite(name=spec.name, expectations=[copy.copy(e) for e in spec.expectations]))
    return batch.validate(suite, result_format="SUMMARY")


def test_needed_columns_cover_the_suites_and_keep_typed_strings():
    contract = expectations.raw_interactions_contract(date(2017, 11, 25), date(2017, 11, 25))
    anomalies = expectations.raw_interactions_anomalies(None, 0.01)
    cols, typed = needed_columns([contract, anomalies], list(INTERACTION_SCHEMA))
    assert set(cols) == set(INTERACTION_SCHEMA)  # the column-set expectation names every column
    assert typed == {"user_id", "item_id", "value", "ts"}
    cols, _ = needed_columns([anomalies], list(INTERACTION_SCHEMA) + ["extra"])
    assert cols == ["user_id", "item_id", "event_type", "ts"]
    cols, _ = needed_columns([expectations.interactions_contract()], ["user_id", "item_id", "event_type", "ts", "unknown_ref", "value"])
    assert cols == ["user_id", "item_id", "event_type", "ts", "unknown_ref"]
    pdf = _for_gx(pl.DataFrame({"a": ["x", None], "b": ["y", "z"]}), ["a", "b"], keep_strings={"b"})
    assert str(pdf["a"].dtype) == "category" and str(pdf["b"].dtype) != "category"


def test_outcomes_match_validating_the_whole_frame():
    frame = _dirty_interactions()
    specs = [
        expectations.raw_interactions_contract(date(2017, 11, 25), date(2017, 11, 25)),
        expectations.raw_interactions_anomalies(None, 0.01),
    ]
    ours = GreatExpectationsResource().validate_many(frame, specs)
    for spec, outcome in zip(specs, ours, strict=True):
        full = _full_validate(frame, spec)
        assert outcome.success == bool(full.success) is False
        want = [
            (
                r.expectation_config.type,
                bool(r.success),
                (r.result or {}).get("unexpected_count"),
                (r.result or {}).get("partial_unexpected_list"),
            )
            for r in full.results
        ]
        got = [(o.expectation, o.success, o.unexpected_count, o.unexpected_sample) for o in outcome.outcomes]
        assert [w[:3] for w in want] == [g[:3] for g in got]
        for (_, _, _, w), (kind, _, _, g) in zip(want, got, strict=True):
            if kind != "expect_table_columns_to_match_set":
                assert [str(v) for v in (w or [])] == [str(v) for v in g]
    failed = {(o.expectation, o.column) for o in ours[0].failed}
    assert ("expect_column_values_to_be_in_set", "event_type") in failed
    assert ("expect_column_values_to_not_be_null", "user_id") in failed
    assert ("expect_column_values_to_be_between", "ts") in failed
    assert ("expect_column_values_to_be_between", "value") in failed  # the rate row's 9.0, under the row condition
    assert not ours[1].success  # the duplicated rate


def test_conversion_gives_the_dtypes_and_values_of_to_pandas():
    frame = _dirty_interactions().with_columns(pl.col("ts").dt.cast_time_unit("ns"))
    ours = _for_gx(frame, frame.columns, keep_strings=set(frame.columns))
    ref = frame.to_pandas()
    assert ours.dtypes.to_dict() == ref.dtypes.to_dict()  # user_id with a null: float64 in both
    assert ours.equals(ref)
