-- OutRank's input rows (features.event_features before bucketing), shaped and labelled like the rankers'
-- rows, from the train fold only (recsys/event_features.py, docs/outrank.md "OutRank's input"). One
-- definition for both engines: DuckDB runs it in the warehouse, Spark on the lake (resources/engine.py).
--
-- Input: staging.split's train fold (user_id, item_id, ts, seq); features.outrank_item_categories
-- (item_id, category_id, null where unknown). Parameters: $start (the label window's first instant),
-- $negatives (negatives per positive), $oversample (draws per wanted negative for a user who has taken
-- nothing, over the share of draws that land: a draw on an item the user has seen or has as a positive
-- is lost, and so is a repeat), $seed, $max_rows (keep whole users, in a seeded order, while their planned rows fit; 2^62 =
-- no cap).
--
-- History = train events before $start, the label window = train events at or after it. Users: those
-- with history and with a positive. Positives: the (user, item) pairs of the window the user had not
-- seen in history, of items known in history, numbered p = 0, 1, ... in the order of their first
-- window event (ts, seq). Negatives: popularity draws among history's items, none seen by the user nor
-- among its positives, the first $negatives x (its positives) distinct ones in draw order.
--
-- The popularity draw, with no global order or numbering of events (each step is a per-key hash, a
-- group-by or an equi-join, so Spark spreads every step over executors; only the row budget's running
-- sum orders all users, one row each): every history event gets a
-- slot, hash(ts, seq) mod N (N = history's events); a slot holding several events keeps one of them
-- (the smallest hash quotient); draw j of user u picks slot hash(u, j) mod N and takes its event's
-- item. An item is drawn in proportion to its events (about 63% of the slots hold one; a draw on an
-- empty slot is lost). A user who has taken (seen, or has as positives) items holding a share s of
-- history's events draws $negatives x ($oversample + 4 s) / (0.6 (1 - s)) times per positive, at most
-- 1000: what repeated rounds of redrawing the short users would draw, in one pass (the 4 s: a heavy
-- user's remaining items are few, so its draws repeat more). The hash is multiply-xorshift mixing of 31-bit integers (Thomas Mueller's
-- 0x45d9f3b), written with +, *, %, xor and >> on BIGINT values below 2^62, so DuckDB and Spark
-- compute the same bits. It reads the events' (ts, seq) and the user's first positive (ts, seq),
-- never an id (ids only break exact ties of (ts, seq) in the orders below): relabelling ids draws the
-- same events (tests/resources/test_engine_event_features.py, tests/assets/test_invariance.py).
--
-- Output, one row per (user, item): label (1 positive, 0 negative), user_id, item_id, category_id,
-- ctx_hour, ctx_weekday (ISO, Monday = 1) of the user's last history event, beh_user_activity (log2
-- bucket of the user's history events), beh_item_popularity (log2 bucket of the item's history
-- events), beh_user_category_affinity (tenths of the user's history in the item's category, at most
-- 9; -1 without a category), beh_recency (log2 bucket of the whole seconds from the user's last
-- history event to $start); and the row order: u_ts, u_seq (the user's first positive; then user_id),
-- part (0 positives, 1 negatives), ord (p, or the draw number j).
--
-- Cost: one pass of group-bys and equi-joins over history, plus one row per draw (positives x draws).
WITH train AS (
    SELECT user_id, item_id, ts, COALESCE(seq, 0) AS seq
    FROM staging.split
    WHERE fold = 'train'
),
history AS (
    SELECT * FROM train WHERE ts < $start
),
seen AS (
    SELECT DISTINCT user_id, item_id FROM history
),
history_items AS (
    SELECT DISTINCT item_id FROM history
),
window_pairs AS (  -- window events of users with history, on items known in history and new to the user
    SELECT w.user_id, w.item_id, w.ts, w.seq,
           ROW_NUMBER() OVER (PARTITION BY w.user_id, w.item_id ORDER BY w.ts, w.seq) AS occurrence
    FROM train AS w
    JOIN history_items AS hi ON hi.item_id = w.item_id
    LEFT JOIN seen AS s ON s.user_id = w.user_id AND s.item_id = w.item_id
    WHERE w.ts >= $start AND s.user_id IS NULL AND w.user_id IN (SELECT user_id FROM seen)
),
positives AS (  -- p: the pair's place among the user's positives, by first window event
    SELECT user_id, item_id, ts, seq,
           ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY ts, seq, item_id) - 1 AS p
    FROM window_pairs
    WHERE occurrence = 1
),
user_keys AS (  -- per user: its first positive's (ts, seq) in microseconds and the count of positives
    SELECT user_id, COUNT(*) AS n_pos,
           MIN(CASE WHEN p = 0 THEN DATE_DIFF('microsecond', TIMESTAMP '1970-01-01 00:00:00', ts) END) AS u_us,
           MIN(CASE WHEN p = 0 THEN seq END) AS u_seq,
           MIN(CASE WHEN p = 0 THEN ts END) AS u_ts
    FROM positives
    GROUP BY user_id
),
user_hash_0 AS (  -- linear fold of the key and the seed into 31 bits, then three mixing steps
    SELECT user_id, n_pos, u_ts, u_seq,
           ((u_us % 2147483648 * 1103515245 % 2147483648 + (u_us // 2147483648) % 2147483648 * 12820163 % 2147483648
             + u_seq % 2147483648 * 69069 % 2147483648 + $seed % 2147483648 * 2654435 % 2147483648) % 2147483648
            + 2147483648) % 2147483648 AS v
    FROM user_keys
),
user_hash_1 AS (
    SELECT user_id, n_pos, u_ts, u_seq, (xor(v, v >> 16) * 73244475) % 2147483648 AS v FROM user_hash_0
),
user_hash_2 AS (
    SELECT user_id, n_pos, u_ts, u_seq, (xor(v, v >> 16) * 73244475) % 2147483648 AS v FROM user_hash_1
),
user_hash AS (  -- h: the user's hash; priority: a second value for the seeded order of whole users
    SELECT user_id, n_pos, u_ts, u_seq, xor(v, v >> 16) AS h,
           (xor(v, v >> 16) * 1103515245 + 12345) % 2147483648 AS priority
    FROM user_hash_2
),
kept_users AS (  -- whole users in priority order while their planned rows (positives and negatives) fit
    SELECT user_id, n_pos, u_ts, u_seq, h
    FROM (
        SELECT *, SUM(n_pos * (1 + $negatives)) OVER (
                      ORDER BY priority, u_ts, u_seq, user_id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
                  ) AS planned
        FROM user_hash
    ) AS ordered
    WHERE planned <= $max_rows
),
n_history AS (
    SELECT COUNT(*) AS n FROM history
),
per_item AS (
    SELECT item_id, COUNT(*) AS i_n FROM history GROUP BY item_id
),
event_hash_0 AS (
    SELECT item_id, ts, seq,
           ((DATE_DIFF('microsecond', TIMESTAMP '1970-01-01 00:00:00', ts) % 2147483648 * 1103515245 % 2147483648
             + (DATE_DIFF('microsecond', TIMESTAMP '1970-01-01 00:00:00', ts) // 2147483648) % 2147483648 * 12820163 % 2147483648
             + seq % 2147483648 * 69069 % 2147483648 + $seed % 2147483648 * 2654435 % 2147483648) % 2147483648
            + 2147483648) % 2147483648 AS v
    FROM history
),
event_hash_1 AS (
    SELECT item_id, ts, seq, (xor(v, v >> 16) * 73244475) % 2147483648 AS v FROM event_hash_0
),
event_hash_2 AS (
    SELECT item_id, ts, seq, (xor(v, v >> 16) * 73244475) % 2147483648 AS v FROM event_hash_1
),
slots AS (  -- one event per occupied slot: the smallest quotient, then the event order
    SELECT slot, item_id
    FROM (
        SELECT item_id, slot, ROW_NUMBER() OVER (PARTITION BY slot ORDER BY quotient, ts, seq, item_id) AS k
        FROM (
            SELECT e.item_id, e.ts, e.seq, xor(e.v, e.v >> 16) % n.n AS slot, xor(e.v, e.v >> 16) // n.n AS quotient
            FROM event_hash_2 AS e
            CROSS JOIN n_history AS n
        ) AS hashed
    ) AS slotted
    WHERE k = 1
),
digits AS (
    SELECT d FROM (VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9)) AS t(d)
),
draw_numbers AS (  -- 0 .. 999
    SELECT a.d * 100 + b.d * 10 + c.d AS r
    FROM digits AS a CROSS JOIN digits AS b CROSS JOIN digits AS c
),
taken_mass AS (  -- per user: the share of history's events on items it has seen or has as positives
    SELECT t.user_id, SUM(i.i_n) / MAX(n.n) AS taken
    FROM (SELECT user_id, item_id FROM seen UNION ALL SELECT user_id, item_id FROM positives) AS t
    JOIN per_item AS i ON i.item_id = t.item_id
    CROSS JOIN n_history AS n
    GROUP BY t.user_id
),
user_draws AS (  -- draws per positive: $negatives x ($oversample + 4 s) over the expected share of useful draws
    -- (0.6: about 1 - 1/e of the slots hold an event; 1 - s: the popularity mass not taken), at most 1000
    SELECT k.user_id, k.h,
           CAST(LEAST(1000, CEIL($negatives * ($oversample + 4e0 * COALESCE(m.taken, 0e0)) / GREATEST(6e-1 * (1e0 - COALESCE(m.taken, 0e0)), 1e-2))) AS BIGINT) AS d
    FROM kept_users AS k
    LEFT JOIN taken_mass AS m ON m.user_id = k.user_id
),
draw_hash_0 AS (  -- draw j = p * d + r of each kept user's positive p
    SELECT k.user_id, p.p * k.d + r.r AS j, (k.h * 1103515245 + (p.p * k.d + r.r) % 2147483648 + 1) % 2147483648 AS v
    FROM user_draws AS k
    JOIN positives AS p ON p.user_id = k.user_id
    JOIN draw_numbers AS r ON r.r < k.d
),
draw_hash_1 AS (
    SELECT user_id, j, (xor(v, v >> 16) * 73244475) % 2147483648 AS v FROM draw_hash_0
),
draw_hash_2 AS (
    SELECT user_id, j, (xor(v, v >> 16) * 73244475) % 2147483648 AS v FROM draw_hash_1
),
draw_slots AS (
    SELECT d.user_id, d.j, xor(d.v, d.v >> 16) % n.n AS slot
    FROM draw_hash_2 AS d
    CROSS JOIN n_history AS n
),
drawn AS (  -- each draw's item; the first draw of an item per user; never seen, never a positive
    SELECT d.user_id, s.item_id, MIN(d.j) AS j
    FROM draw_slots AS d
    JOIN slots AS s ON s.slot = d.slot
    LEFT JOIN seen AS sn ON sn.user_id = d.user_id AND sn.item_id = s.item_id
    LEFT JOIN positives AS ps ON ps.user_id = d.user_id AND ps.item_id = s.item_id
    WHERE sn.user_id IS NULL AND ps.user_id IS NULL
    GROUP BY d.user_id, s.item_id
),
negatives AS (
    SELECT user_id, item_id, j
    FROM (
        SELECT d.user_id, d.item_id, d.j, ROW_NUMBER() OVER (PARTITION BY d.user_id ORDER BY d.j) AS k, ku.n_pos
        FROM drawn AS d
        JOIN kept_users AS ku ON ku.user_id = d.user_id
    ) AS numbered
    WHERE k <= n_pos * $negatives
),
pairs AS (
    SELECT p.user_id, p.item_id, 1 AS label, 0 AS part, p.p AS ord
    FROM positives AS p
    WHERE p.user_id IN (SELECT user_id FROM kept_users)
    UNION ALL
    SELECT user_id, item_id, 0 AS label, 1 AS part, j AS ord
    FROM negatives
),
history_categories AS (
    SELECT h.user_id, h.item_id, h.ts, c.category_id
    FROM history AS h
    LEFT JOIN features.outrank_item_categories AS c ON c.item_id = h.item_id
),
per_user AS (
    SELECT user_id, COUNT(*) AS u_n, MAX(ts) AS u_last FROM history GROUP BY user_id
),
per_user_category AS (
    SELECT user_id, category_id, COUNT(*) AS uc_n
    FROM history_categories
    WHERE category_id IS NOT NULL
    GROUP BY user_id, category_id
)
SELECT CAST(pr.label AS INTEGER) AS label, pr.user_id, pr.item_id, c.category_id,
       CAST(HOUR(u.u_last) AS INTEGER) AS ctx_hour,
       -- ISO weekday from the days since 1970-01-01, a Thursday (ISO 4); written out because the
       -- engines number weekdays differently
       CAST((DATE_DIFF('day', DATE '1970-01-01', CAST(u.u_last AS DATE)) % 7 + 7 + 3) % 7 + 1 AS INTEGER) AS ctx_weekday,
       -- log2 buckets of counts: floor(log2(1 + n)); the 1e-9 keeps exact powers of two on their bucket
       -- whichever logarithm an engine computes (Spark's is ln x / ln 2)
       CAST(FLOOR(LOG2(1 + u.u_n) + 1e-9) AS INTEGER) AS beh_user_activity,
       CAST(FLOOR(LOG2(1 + COALESCE(i.i_n, 0)) + 1e-9) AS INTEGER) AS beh_item_popularity,
       CAST(CASE WHEN c.category_id IS NULL THEN -1 ELSE LEAST(FLOOR(10 * COALESCE(uc.uc_n, 0) / u.u_n), 9) END AS INTEGER)
           AS beh_user_category_affinity,
       CAST(FLOOR(LOG2(1 + DATE_DIFF('microsecond', u.u_last, $start) // 1000000) + 1e-9) AS INTEGER) AS beh_recency,
       ku.u_ts, ku.u_seq, pr.part, pr.ord
FROM pairs AS pr
JOIN kept_users AS ku ON ku.user_id = pr.user_id
JOIN per_user AS u ON u.user_id = pr.user_id
LEFT JOIN per_item AS i ON i.item_id = pr.item_id
LEFT JOIN features.outrank_item_categories AS c ON c.item_id = pr.item_id
LEFT JOIN per_user_category AS uc ON uc.user_id = pr.user_id AND uc.category_id = c.category_id
