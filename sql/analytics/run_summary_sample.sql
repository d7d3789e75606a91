-- Who one evaluation run scored on the test fold (orchestration/summary.py, resources/reports.py):
-- all users, or a seeded uniform sample of them past RECDAG_EVAL_USERS (eval.user_sample).
SELECT n_users, n_sampled, sampled, budget, seed, method
FROM eval.user_sample
WHERE run_id = $run_id
  AND fold = 'test'
ORDER BY evaluated_at DESC
LIMIT 1
