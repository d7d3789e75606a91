-- All cleaned interactions, in time order, for the split.
SELECT user_id, item_id, event_type, value, ts, event_date, session_id, source, seq
FROM staging.interactions
ORDER BY ts, seq  -- the canonical event order (recsys.schema.EVENT_ORDER); never by an id
