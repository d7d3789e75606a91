-- The newest final-stage decision (assets/final_stage.py) for the end-of-run summary (orchestration/summary.py).
SELECT stage, kind, rankers_passed, valid_ndcg10, best_channel, best_channel_ndcg10, margin, margin_low, margin_high, n_users
FROM models.final_stage
ORDER BY decided_at DESC
LIMIT 1
