-- The leave-last-out split (recsys.split.leave_last_out_split): per user, in the canonical event order
-- (ts, seq; a null seq sorts first, as in polars), the last interaction is test, the one before it
-- valid, the rest train; users with fewer than $min_interactions interactions stay in train.
-- One definition for both engines: DuckDB runs it in the warehouse, Spark on the lake (resources/engine.py).
WITH ranked AS (
    SELECT *,
           row_number() OVER (PARTITION BY user_id ORDER BY ts DESC, seq DESC NULLS LAST) AS from_end,
           count(*) OVER (PARTITION BY user_id) AS n_user
    FROM staging.interactions
)
SELECT user_id, item_id, event_type, value, ts, event_date, session_id, source, seq,
       CASE WHEN n_user < $min_interactions THEN 'train'
            WHEN from_end = 1 THEN 'test'
            WHEN from_end = 2 THEN 'valid'
            ELSE 'train'
       END AS fold
FROM ranked
