-- All cleaned interactions, in time order, for the split.
SELECT user_id, item_id, event_type, value, ts, event_date, session_id, source
FROM staging.interactions
ORDER BY ts, user_id, item_id
