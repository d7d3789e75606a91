-- One fold of staging.split as an interactions frame.
SELECT user_id, item_id, event_type, value, ts, event_date, session_id, source, seq
FROM staging.split
WHERE fold = $fold
ORDER BY ts, seq  -- the canonical event order (recsys.schema.EVENT_ORDER)
