-- The warehouse contract (DESIGN.md section 3). Idempotent: run at the start of every writing asset.
CREATE SCHEMA IF NOT EXISTS raw;
CREATE SCHEMA IF NOT EXISTS staging;
CREATE SCHEMA IF NOT EXISTS quality;
CREATE SCHEMA IF NOT EXISTS features;
CREATE SCHEMA IF NOT EXISTS candidates;
CREATE SCHEMA IF NOT EXISTS models;
CREATE SCHEMA IF NOT EXISTS eval;
CREATE SCHEMA IF NOT EXISTS serving;

CREATE TABLE IF NOT EXISTS raw.interactions (
    user_id BIGINT NOT NULL,
    item_id BIGINT NOT NULL,
    event_type VARCHAR NOT NULL,
    value DOUBLE,
    ts TIMESTAMP NOT NULL,
    event_date DATE NOT NULL,
    session_id BIGINT,
    source VARCHAR,
    ingested_at TIMESTAMP NOT NULL,
    seq BIGINT  -- position in the source (line number); (ts, seq) is the canonical event order
);
-- Warehouses made before the event-order contract gain the column (NULL until re-ingested).
ALTER TABLE raw.interactions ADD COLUMN IF NOT EXISTS seq BIGINT;

CREATE TABLE IF NOT EXISTS staging.interactions (
    user_id BIGINT NOT NULL,
    item_id BIGINT NOT NULL,
    event_type VARCHAR NOT NULL,
    value DOUBLE,
    ts TIMESTAMP NOT NULL,
    event_date DATE NOT NULL,
    session_id BIGINT,
    source VARCHAR,
    seq BIGINT
);
ALTER TABLE staging.interactions ADD COLUMN IF NOT EXISTS seq BIGINT;

CREATE TABLE IF NOT EXISTS quality.quarantine (
    source VARCHAR,
    "partition" VARCHAR,
    line_no BIGINT,
    raw_line VARCHAR,
    reason VARCHAR,
    ingested_at TIMESTAMP
);

CREATE TABLE IF NOT EXISTS quality.check_results (
    asset VARCHAR,
    "check" VARCHAR,
    "partition" VARCHAR,
    passed BOOLEAN,
    severity VARCHAR,
    details JSON,
    run_id VARCHAR,
    evaluated_at TIMESTAMP
);

CREATE TABLE IF NOT EXISTS quality.alerts (
    alert_id VARCHAR PRIMARY KEY,
    kind VARCHAR,
    asset VARCHAR,
    "check" VARCHAR,
    "partition" VARCHAR,
    run_id VARCHAR,
    severity VARCHAR,
    message VARCHAR,
    created_at TIMESTAMP,
    delivered_at TIMESTAMP,
    attempts INTEGER DEFAULT 0,
    last_error VARCHAR
);

CREATE TABLE IF NOT EXISTS quality.ingestion_log (
    "partition" VARCHAR,
    n_read BIGINT,
    n_loaded BIGINT,
    n_quarantined BIGINT,
    run_id VARCHAR,
    ingested_at TIMESTAMP
);

CREATE TABLE IF NOT EXISTS models.registry (
    name VARCHAR,
    version VARCHAR,
    path VARCHAR,
    params JSON,
    metrics JSON,
    run_id VARCHAR,
    trained_at TIMESTAMP,
    promoted BOOLEAN DEFAULT FALSE,
    dataset VARCHAR,      -- with protocol and cutoff_rule: the promotion gate compares like with like
    protocol VARCHAR,
    cutoff_rule VARCHAR,  -- how the cut-offs were made, e.g. temporal:valid_frac=0.1,test_frac=0.1
    gate_passed BOOLEAN,  -- the ndcg_regression verdict on this model (NULL: never judged)
    gate_details JSON
);
-- Registries made before the like-with-like gate gain the columns (NULL: comparable to nothing).
ALTER TABLE models.registry ADD COLUMN IF NOT EXISTS dataset VARCHAR;
ALTER TABLE models.registry ADD COLUMN IF NOT EXISTS protocol VARCHAR;
ALTER TABLE models.registry ADD COLUMN IF NOT EXISTS cutoff_rule VARCHAR;
ALTER TABLE models.registry ADD COLUMN IF NOT EXISTS gate_passed BOOLEAN;
ALTER TABLE models.registry ADD COLUMN IF NOT EXISTS gate_details JSON;

CREATE TABLE IF NOT EXISTS eval.metrics (
    run_id VARCHAR,
    evaluated_at TIMESTAMP,
    dataset VARCHAR,
    protocol VARCHAR,
    fold VARCHAR,
    stage VARCHAR,
    cohort VARCHAR,
    metric VARCHAR,
    k INTEGER,
    value DOUBLE,
    ci_low DOUBLE,
    ci_high DOUBLE,
    n_users BIGINT,
    cutoff VARCHAR  -- the rolling-origin cut-off partition evaluated; 'pooled' for evaluation_summary rows
);
ALTER TABLE eval.metrics ADD COLUMN IF NOT EXISTS cutoff VARCHAR;

-- Per-user accuracy on the test fold (cohort all), one row per (run, cut-off, stage, user, metric, k):
-- what evaluation_summary pools across cut-offs.
CREATE TABLE IF NOT EXISTS eval.per_user (
    run_id VARCHAR,
    evaluated_at TIMESTAMP,
    dataset VARCHAR,
    protocol VARCHAR,
    cutoff VARCHAR,
    stage VARCHAR,
    user_id BIGINT,
    metric VARCHAR,
    k INTEGER,
    value DOUBLE
);

-- Who a run's per-user evaluation scored (recsys.metrics.sampling): all n_users of a fold, or, past the
-- budget (RECDAG_EVAL_USERS), a seeded uniform sample of n_sampled of them; eval.metrics' n_users counts
-- the users scored, this table the users there were. One row per evaluation run (fold 'test').
CREATE TABLE IF NOT EXISTS eval.user_sample (
    run_id VARCHAR,
    evaluated_at TIMESTAMP,
    dataset VARCHAR,
    protocol VARCHAR,
    cutoff VARCHAR,
    fold VARCHAR,
    n_users BIGINT,     -- users the fold evaluates (warm users; every target user under the files protocol)
    n_sampled BIGINT,   -- users scored: n_users when sampled is false
    sampled BOOLEAN,
    budget BIGINT,
    seed BIGINT,
    method VARCHAR      -- 'all' | 'seeded uniform sample'
);

-- final_stage's decisions (assets/final_stage.py): what was served and why, one row per decision
CREATE TABLE IF NOT EXISTS models.final_stage (
    run_id VARCHAR,
    cutoff VARCHAR,
    dataset VARCHAR,
    protocol VARCHAR,
    cutoff_rule VARCHAR,
    stage VARCHAR,
    kind VARCHAR,
    rankers_passed VARCHAR,
    valid_ndcg10 DOUBLE,
    best_channel VARCHAR,
    best_channel_ndcg10 DOUBLE,
    margin DOUBLE,
    margin_low DOUBLE,
    margin_high DOUBLE,
    n_users BIGINT,
    candidates JSON,
    decided_at TIMESTAMP
);
