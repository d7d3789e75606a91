-- staging.interactions for one partition window: typed, bounded, de-duplicated copy of raw.
-- Duplicates are identical (user, item, ts, event_type) events; the last ingested copy wins, and
-- among copies of one ingestion the first in the source (lowest seq). Only the keys that occur
-- more than once go through the window function; every other row passes as it is.
WITH w AS (
    SELECT user_id, item_id, event_type, value, ts, event_date, session_id, source, seq, ingested_at
    FROM raw.interactions
    WHERE event_date BETWEEN $start AND $end
      AND user_id >= 0 AND item_id >= 0
),
dup AS (  -- the key columns are NOT NULL in raw.interactions, so the joins below match as GROUP BY does
    SELECT user_id, item_id, ts, event_type FROM w GROUP BY ALL HAVING count(*) > 1
)
SELECT user_id, item_id, event_type, value, ts, event_date, session_id, source, seq
FROM w ANTI JOIN dup USING (user_id, item_id, ts, event_type)
UNION ALL
SELECT user_id, item_id, event_type, value, ts, event_date, session_id, source, seq
FROM (
    SELECT *,
           row_number() OVER (
               PARTITION BY user_id, item_id, ts, event_type
               ORDER BY ingested_at DESC, seq
           ) AS copy_no
    FROM w SEMI JOIN dup USING (user_id, item_id, ts, event_type)
)
WHERE copy_no = 1
