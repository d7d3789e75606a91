"""Sensors: data-quality and run-failure alerts (filled by the operations work)."""

SENSORS: list = []
