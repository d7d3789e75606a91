-- evaluation_summary's paired tests (served stage versus every other, Holm-corrected) of one run.
SELECT stage, versus, mean_diff, ci_low, ci_high, p_value, p_holm, decided_95, n_users, n_cutoffs, verdict, cutoffs
FROM eval.pooled_paired_test
WHERE run_id = $run_id
ORDER BY p_holm, versus
