"""Everything that touches the outside world: DuckDB, dataset files, GX, devices, models, alerts."""
