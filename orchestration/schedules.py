"""Schedules built from the partitioned jobs (filled by the operations work)."""

SCHEDULES: list = []
