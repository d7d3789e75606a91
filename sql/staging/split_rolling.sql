-- The rolling-origin temporal split (protocol "temporal"; recsys.backtest.rolling_split): every clean
-- interaction before $test_end with its fold, train < $valid_start <= valid < $test_start <= test < $test_end.
-- One definition for both engines: DuckDB runs it in the warehouse, Spark on the lake (resources/engine.py).
SELECT user_id, item_id, event_type, value, ts, event_date, session_id, source, seq,
       CASE WHEN ts < $valid_start THEN 'train' WHEN ts < $test_start THEN 'valid' ELSE 'test' END AS fold
FROM staging.interactions
WHERE ts < $test_end
