"""sql/staging/interactions.sql (window function only over repeated keys) keeps exactly the rows the
plain window-function dedupe keeps: the last ingested copy, then the lowest seq (nulls last)."""

import duckdb

from resources.warehouse import load_sql

REFERENCE = """
SELECT user_id, item_id, event_type, value, ts, event_date, session_id, source, seq
FROM (
    SELECT *, row_number() OVER (PARTITION BY user_id, item_id, ts, event_type ORDER BY ingested_at DESC, seq) AS copy_no
    FROM raw.interactions
    WHERE event_date BETWEEN $start AND $end AND user_id >= 0 AND item_id >= 0
)
WHERE copy_no = 1
"""


def test_dedupe_matches_the_window_function_reference():
    con = duckdb.connect()
    con.execute(load_sql("ddl/warehouse"))
    con.execute(
        """
        INSERT INTO raw.interactions
        SELECT i % 50, i % 7, CASE WHEN i % 3 = 0 THEN 'view' ELSE 'buy' END, i, TIMESTAMP '2017-11-25' + to_minutes(i % 40),
               DATE '2017-11-25' + (i % 2)::INT, NULL, 'taobao', TIMESTAMP '2020-01-01' + to_seconds(i % 4),
               CASE WHEN i % 11 = 0 THEN NULL ELSE i END
        FROM range(5000) AS t(i)
        """
    )
    params = {"start": "2017-11-25", "end": "2017-11-26"}
    ours = con.execute(f"SELECT * FROM ({load_sql('staging/interactions')}) ORDER BY ALL", params).fetchall()
    want = con.execute(f"SELECT * FROM ({REFERENCE}) ORDER BY ALL", params).fetchall()
    assert len(want) < 5000 and ours == want
