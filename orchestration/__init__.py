"""Dagster wiring: Definitions, jobs, partitions, schedules, sensors, pools."""
