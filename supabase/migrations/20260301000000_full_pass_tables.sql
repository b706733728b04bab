-- Full pass (soulprint-rlm): the columns and tables the service writes (DESIGN §3, §4).
--
-- Idempotent: every statement checks before it changes, so applying this file twice is a no-op.
-- Tables that already exist in the product (user_profiles, possibly conversation_chunks and
-- processing_jobs) only gain the columns they lack; nothing is dropped or rewritten.
-- `conversation_chunks.embedding` belongs to another service: never created, altered or dropped here.

-- ---------------------------------------------------------------------------------------------
-- user_profiles: the full-pass status and results.
-- A new full_pass_status column starts at 'pending' (no full pass has run yet).
ALTER TABLE public.user_profiles
    ADD COLUMN IF NOT EXISTS full_pass_status text DEFAULT 'pending',
    ADD COLUMN IF NOT EXISTS full_pass_started_at timestamptz,
    ADD COLUMN IF NOT EXISTS full_pass_completed_at timestamptz,
    ADD COLUMN IF NOT EXISTS full_pass_error text,
    ADD COLUMN IF NOT EXISTS memory_md text,
    ADD COLUMN IF NOT EXISTS soul_md text,
    ADD COLUMN IF NOT EXISTS identity_md text,
    ADD COLUMN IF NOT EXISTS user_md text,
    ADD COLUMN IF NOT EXISTS agents_md text,
    ADD COLUMN IF NOT EXISTS tools_md text,
    ADD COLUMN IF NOT EXISTS soulprint_text text;

-- NOT VALID: rows the earlier service wrote are neither rejected nor rewritten; new writes are checked.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'user_profiles_full_pass_status_check'
          AND conrelid = 'public.user_profiles'::regclass
    ) THEN
        ALTER TABLE public.user_profiles
            ADD CONSTRAINT user_profiles_full_pass_status_check
            CHECK (full_pass_status IN ('pending', 'processing', 'complete', 'failed')) NOT VALID;
    END IF;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- conversation_chunks: one row per chunk, keyed by a deterministic id so re-runs upsert.
CREATE TABLE IF NOT EXISTS public.conversation_chunks (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL,
    conversation_id text,
    title text,
    content text,
    message_count integer,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now(),
    is_recent boolean DEFAULT false,
    chunk_tier text DEFAULT 'medium'
);

ALTER TABLE public.conversation_chunks
    ADD COLUMN IF NOT EXISTS chunk_index integer,
    ADD COLUMN IF NOT EXISTS content_hash text,
    ADD COLUMN IF NOT EXISTS import_job_id uuid;

CREATE INDEX IF NOT EXISTS conversation_chunks_user_id_idx
    ON public.conversation_chunks (user_id);

-- ---------------------------------------------------------------------------------------------
-- processing_jobs: a leased queue (claim / heartbeat / finish through the functions in the next file).
CREATE TABLE IF NOT EXISTS public.processing_jobs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL,
    status text NOT NULL DEFAULT 'queued',
    storage_path text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE public.processing_jobs
    ADD COLUMN IF NOT EXISTS pipeline_version text NOT NULL DEFAULT 'v2',
    ADD COLUMN IF NOT EXISTS conversation_count integer,
    ADD COLUMN IF NOT EXISTS message_count integer,
    ADD COLUMN IF NOT EXISTS chunk_count integer,
    ADD COLUMN IF NOT EXISTS current_step text,
    ADD COLUMN IF NOT EXISTS progress integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS error_message text,
    ADD COLUMN IF NOT EXISTS attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS max_attempts integer NOT NULL DEFAULT 3,
    ADD COLUMN IF NOT EXISTS run_after timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS lease_owner text,
    ADD COLUMN IF NOT EXISTS lease_expires_at timestamptz,
    ADD COLUMN IF NOT EXISTS heartbeat_at timestamptz,
    ADD COLUMN IF NOT EXISTS export_sha256 text,
    ADD COLUMN IF NOT EXISTS llm_provider text,
    ADD COLUMN IF NOT EXISTS force boolean NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS input_tokens bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS output_tokens bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS cost_usd numeric(12, 6) NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS stats jsonb NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS started_at timestamptz,
    ADD COLUMN IF NOT EXISTS completed_at timestamptz;

-- NOT VALID, as for user_profiles: a product table may hold rows with other statuses (the earlier
-- service's); they are neither rejected nor rewritten, and the queue never claims them.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'processing_jobs_status_check'
          AND conrelid = 'public.processing_jobs'::regclass
    ) THEN
        ALTER TABLE public.processing_jobs
            ADD CONSTRAINT processing_jobs_status_check
            CHECK (status IN ('queued', 'running', 'complete', 'failed')) NOT VALID;
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'processing_jobs_progress_check'
          AND conrelid = 'public.processing_jobs'::regclass
    ) THEN
        ALTER TABLE public.processing_jobs
            ADD CONSTRAINT processing_jobs_progress_check CHECK (progress BETWEEN 0 AND 100) NOT VALID;
    END IF;
END
$$;

-- At most one active job per user: a second request returns the first job (enqueue_full_pass_job).
CREATE UNIQUE INDEX IF NOT EXISTS processing_jobs_one_active_per_user
    ON public.processing_jobs (user_id) WHERE status IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS processing_jobs_due_idx
    ON public.processing_jobs (status, run_after);
CREATE INDEX IF NOT EXISTS processing_jobs_user_created_idx
    ON public.processing_jobs (user_id, created_at DESC);

-- ---------------------------------------------------------------------------------------------
-- fact_extraction_cache: facts per chunk content, so a re-run does not pay for extraction again.
CREATE TABLE IF NOT EXISTS public.fact_extraction_cache (
    user_id uuid NOT NULL,
    content_hash text NOT NULL,
    extractor_version text NOT NULL,
    facts jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, content_hash, extractor_version)
);

-- ---------------------------------------------------------------------------------------------
-- Row level security: only the service role (this service) reads and writes these tables.
ALTER TABLE public.conversation_chunks ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.processing_jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.fact_extraction_cache ENABLE ROW LEVEL SECURITY;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['conversation_chunks', 'processing_jobs', 'fact_extraction_cache'] LOOP
        IF NOT EXISTS (
            SELECT 1 FROM pg_policies
            WHERE schemaname = 'public' AND tablename = t AND policyname = 'service_role_full_access'
        ) THEN
            EXECUTE format(
                'CREATE POLICY service_role_full_access ON public.%I '
                'FOR ALL TO service_role USING (true) WITH CHECK (true)',
                t
            );
        END IF;
    END LOOP;
END
$$;

GRANT SELECT, INSERT, UPDATE, DELETE
    ON public.conversation_chunks, public.processing_jobs, public.fact_extraction_cache
    TO service_role;
GRANT SELECT, UPDATE ON public.user_profiles TO service_role;
