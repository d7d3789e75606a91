-- staging.interactions for one partition window: typed, bounded, de-duplicated copy of raw.
-- Duplicates are identical (user, item, ts, event_type) events; the last ingested copy wins, and
-- among copies of one ingestion the first in the source (lowest seq).
SELECT user_id, item_id, event_type, value, ts, event_date, session_id, source, seq
FROM (
    SELECT *,
           row_number() OVER (
               PARTITION BY user_id, item_id, ts, event_type
               ORDER BY ingested_at DESC, seq
           ) AS copy_no
    FROM raw.interactions
    WHERE event_date BETWEEN $start AND $end
      AND user_id >= 0 AND item_id >= 0
)
WHERE copy_no = 1
