-- Per-user test accuracy of the newest evaluation run of every cut-off of one dataset and protocol:
-- the units evaluation_summary pools across cut-offs.
WITH latest AS (
    SELECT cutoff, arg_max(run_id, evaluated_at) AS run_id
    FROM eval.per_user
    WHERE dataset = $dataset AND protocol = $protocol AND cutoff IS NOT NULL
    GROUP BY cutoff
)
SELECT p.cutoff, p.run_id, p.stage, p.user_id, p.metric, p.k, p.value
FROM eval.per_user AS p
JOIN latest USING (cutoff, run_id)
ORDER BY p.cutoff, p.stage, p.user_id, p.metric, p.k
