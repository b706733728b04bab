-- The embedded store's schema: the same tables and column names as the Supabase migrations
-- (supabase/migrations), in SQLite's types. Timestamps are ISO-8601 UTC text, ids are uuid text,
-- JSON is text. Applied on every open; every statement is idempotent. A database made by an older
-- version gains new columns and changed CHECKs through app/adapters/local_schema_upgrade.py.

CREATE TABLE IF NOT EXISTS user_profiles (
    user_id TEXT PRIMARY KEY,
    full_pass_status TEXT CHECK (full_pass_status IN ('pending', 'processing', 'complete', 'failed')),
    full_pass_started_at TEXT,
    full_pass_completed_at TEXT,
    full_pass_error TEXT,
    memory_md TEXT,
    soul_md TEXT,
    identity_md TEXT,
    user_md TEXT,
    agents_md TEXT,
    tools_md TEXT,
    soulprint_text TEXT
);

CREATE TABLE IF NOT EXISTS conversation_chunks (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    conversation_id TEXT,
    title TEXT,
    content TEXT,
    message_count INTEGER,
    created_at TEXT,
    updated_at TEXT,
    is_recent INTEGER,
    chunk_tier TEXT DEFAULT 'medium',
    chunk_index INTEGER,
    content_hash TEXT,
    import_job_id TEXT,
    -- The import this row belonged to before the current one re-tagged it ('none': no import id);
    -- NULL when the current import created it. Lets a failed import be rolled back.
    prior_import_job_id TEXT
);
CREATE INDEX IF NOT EXISTS conversation_chunks_user_id_idx ON conversation_chunks (user_id);

-- The import whose chunks are the user's chunks (set with the removal of every other row).
CREATE TABLE IF NOT EXISTS conversation_chunk_imports (
    user_id TEXT PRIMARY KEY,
    import_job_id TEXT NOT NULL,
    committed_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS processing_jobs (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'complete', 'failed', 'canceled')),
    storage_path TEXT NOT NULL,
    pipeline_version TEXT NOT NULL DEFAULT 'v2',
    conversation_count INTEGER,
    message_count INTEGER,
    chunk_count INTEGER,
    current_step TEXT,
    progress INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    error_message TEXT,
    note TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 3,
    run_after TEXT NOT NULL,
    lease_owner TEXT,
    lease_expires_at TEXT,
    heartbeat_at TEXT,
    export_sha256 TEXT,
    llm_provider TEXT,
    force INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0,
    stats TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    started_at TEXT,
    completed_at TEXT,
    cancel_requested_at TEXT,
    export_bytes INTEGER CHECK (export_bytes >= 0)
);
CREATE UNIQUE INDEX IF NOT EXISTS processing_jobs_one_active_per_user
    ON processing_jobs (user_id) WHERE status IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS processing_jobs_due_idx ON processing_jobs (status, run_after);
-- The ops page: jobs of one status, newest first, and the hours jobs ended in.
CREATE INDEX IF NOT EXISTS processing_jobs_status_completed_idx
    ON processing_jobs (status, completed_at);

CREATE TABLE IF NOT EXISTS fact_extraction_cache (
    user_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    extractor_version TEXT NOT NULL,
    facts TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (user_id, content_hash, extractor_version)
);

-- The audit trail (issue 11): append-only; only forgetting a user deletes rows.
CREATE TABLE IF NOT EXISTS processing_job_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    worker_id TEXT,
    step TEXT,
    at TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS processing_job_events_job_idx ON processing_job_events (job_id, id);
CREATE INDEX IF NOT EXISTS processing_job_events_user_idx ON processing_job_events (user_id);
CREATE INDEX IF NOT EXISTS processing_job_events_step_durations_idx
    ON processing_job_events (step, id DESC) WHERE kind = 'step_completed';
CREATE TRIGGER IF NOT EXISTS processing_job_events_append_only
    BEFORE UPDATE ON processing_job_events
BEGIN
    SELECT RAISE(ABORT, 'processing_job_events is append-only');
END;

-- Batch mode (LLM_MODE=batch): a job's Message Batches, so a restart polls the same batch and
-- never submits it twice (app/batch_port.py). Request rows go once the batch's results are read.
CREATE TABLE IF NOT EXISTS llm_batches (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('extract', 'reduce')),
    state TEXT NOT NULL
        CHECK (state IN ('submitting', 'in_progress', 'ended', 'read', 'abandoned')),
    provider_batch_id TEXT,
    request_count INTEGER NOT NULL CHECK (request_count >= 0),
    counts TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    submitted_at TEXT,
    ended_at TEXT
);
CREATE INDEX IF NOT EXISTS llm_batches_job_idx ON llm_batches (job_id, created_at);

CREATE TABLE IF NOT EXISTS llm_batch_requests (
    batch_id TEXT NOT NULL,
    custom_id TEXT NOT NULL,
    content_hashes TEXT NOT NULL,
    PRIMARY KEY (batch_id, custom_id)
);

-- A job's batches go with the job (forgetting a user deletes its jobs), their requests with them.
CREATE TRIGGER IF NOT EXISTS llm_batches_follow_job AFTER DELETE ON processing_jobs
BEGIN
    DELETE FROM llm_batches WHERE job_id = OLD.id;
END;
CREATE TRIGGER IF NOT EXISTS llm_batch_requests_follow_batch AFTER DELETE ON llm_batches
BEGIN
    DELETE FROM llm_batch_requests WHERE batch_id = OLD.id;
END;
