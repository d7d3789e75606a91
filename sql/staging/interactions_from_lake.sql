-- staging.interactions' rows of [$start, $end] as the Spark engine wrote them to the lake ($files: the
-- days' Parquet files, hive-partitioned by event_date; resources/lake.py).
SELECT user_id, item_id, event_type, value, ts, event_date, session_id, source, seq
FROM read_parquet($files, hive_partitioning = true)
WHERE event_date BETWEEN $start AND $end
