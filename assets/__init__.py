"""Thin Dagster assets, one module per stage: read inputs, call recsys, write outputs, attach metadata."""
