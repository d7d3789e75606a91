-- staging.split as the Spark engine wrote it to the lake ($files: its Parquet files, hive-partitioned
-- by event_date; resources/lake.py).
SELECT user_id, item_id, event_type, value, ts, event_date, session_id, source, seq, fold
FROM read_parquet($files, hive_partitioning = true)
