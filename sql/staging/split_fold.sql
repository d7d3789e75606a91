-- One fold of staging.split as an interactions frame.
SELECT user_id, item_id, event_type, value, ts, event_date, session_id, source
FROM staging.split
WHERE fold = $fold
ORDER BY ts, user_id, item_id
