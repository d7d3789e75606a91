-- The temporal_quantile split (recsys.split.temporal_split): every clean interaction with its fold at the
-- global cuts $t1 (valid's first timestamp) and $t2 (test's), train < $t1 <= valid < $t2 <= test; a null
-- cut lies after everything. One definition for both engines: DuckDB in the warehouse, Spark on the lake.
SELECT user_id, item_id, event_type, value, ts, event_date, session_id, source, seq,
       CASE WHEN $t1 IS NULL OR ts < $t1 THEN 'train'
            WHEN $t2 IS NOT NULL AND ts >= $t2 THEN 'test'
            ELSE 'valid'
       END AS fold
FROM staging.interactions
