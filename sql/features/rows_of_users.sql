-- The rows of a ranker frame table ($table) for the users in $users (a list of ids), in
-- (user_id, item_id) order: only these users' lists leave DuckDB.
SELECT *
FROM query_table($table)
WHERE user_id IN (SELECT unnest($users::BIGINT[]))
ORDER BY user_id, item_id
