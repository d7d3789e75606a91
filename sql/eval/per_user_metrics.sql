-- Per-user full-ranking accuracy at every K, the definitions of recsys/metrics/accuracy.py (docs/evaluation.md):
-- one row per (user of eval.truth, k of eval.ks). eval.lists holds the lists (user_id, item_id, rank; ranks
-- unique within a user), eval.truth the relevant (user_id, item_id), eval.positions the positions 1..max K.
-- Literals are written 1e0 (a DOUBLE on both engines; 1.0 is a DECIMAL in Spark).
-- One definition for both engines (resources/engine.py SqlEngine.per_user_metrics): DuckDB, or Spark.
WITH truth AS (
    SELECT DISTINCT user_id, item_id FROM eval.truth
),
n_rel AS (
    SELECT user_id, count(*) AS n_rel FROM truth GROUP BY user_id
),
max_k AS (
    SELECT max(k) AS max_k FROM eval.ks
),
positions AS (  -- pos 1..n per user following rank
    SELECT user_id, item_id, row_number() OVER (PARTITION BY user_id ORDER BY rank, item_id) AS pos
    FROM eval.lists
    WHERE user_id IN (SELECT user_id FROM n_rel)
),
hits AS (  -- one row per hit within max K: its discount and the precision at its position
    SELECT p.user_id, p.pos, 1e0 / log2(p.pos + 1) AS disc,
           row_number() OVER (PARTITION BY p.user_id ORDER BY p.pos) / p.pos AS prec_at_hit
    FROM positions AS p
    JOIN truth AS t ON t.user_id = p.user_id AND t.item_id = p.item_id
    WHERE p.pos <= (SELECT max_k FROM max_k)
),
at_k AS (
    SELECT h.user_id, k.k, count(*) AS n_hits, sum(h.disc) AS dcg, min(h.pos) AS first_pos, sum(h.prec_at_hit) AS ap_sum
    FROM hits AS h
    JOIN eval.ks AS k ON h.pos <= k.k
    GROUP BY h.user_id, k.k
),
ideal AS (  -- idcg of j relevant items = sum over i = 1..j of 1/log2(i+1)
    SELECT pos AS n_ideal, sum(1e0 / log2(pos + 1)) OVER (ORDER BY pos ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS idcg
    FROM eval.positions
),
scored AS (
    SELECT n.user_id, k.k, n.n_rel, least(n.n_rel, k.k) AS n_ideal,
           coalesce(a.n_hits, 0) AS n_hits, coalesce(a.dcg, 0e0) AS dcg, a.first_pos, coalesce(a.ap_sum, 0e0) AS ap_sum
    FROM n_rel AS n
    CROSS JOIN eval.ks AS k
    LEFT JOIN at_k AS a ON a.user_id = n.user_id AND a.k = k.k
)
SELECT s.user_id, s.k,
       CASE WHEN s.n_hits > 0 THEN 1e0 ELSE 0e0 END AS hit_rate,
       s.n_hits / s.n_rel AS recall,
       s.n_hits / s.k AS precision,
       s.dcg / i.idcg AS ndcg,
       coalesce(1e0 / s.first_pos, 0e0) AS mrr,
       s.ap_sum / s.n_ideal AS map,
       s.ap_sum / s.n_rel AS map_trec
FROM scored AS s
JOIN ideal AS i ON i.n_ideal = s.n_ideal
