-- Batch mode (LLM_MODE=batch, issue 10): a job's Message Batches, so a deploy or a crash resumes
-- polling the same batch and never submits it twice, and whichever process reads a batch's
-- results can split them into the per-chunk fact cache.
--
-- Idempotent like the earlier files: tables and indexes only when missing, functions CREATE OR
-- REPLACE, SECURITY INVOKER with EXECUTE for service_role only. Must run after 20260301000000
-- (processing_jobs).

-- ---------------------------------------------------------------------------------------------
-- llm_batches: one row per Message Batch. `id` is ours, recorded (state 'submitting') before the
-- provider is asked; `provider_batch_id` is set the moment the provider answered. A job's batches
-- go with the job (forget_user_data deletes a user's jobs), their requests with them.
CREATE TABLE IF NOT EXISTS public.llm_batches (
    id uuid PRIMARY KEY,
    job_id uuid NOT NULL REFERENCES public.processing_jobs (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('extract', 'reduce')),
    state text NOT NULL
        CHECK (state IN ('submitting', 'in_progress', 'ended', 'read', 'abandoned')),
    provider_batch_id text,
    request_count integer NOT NULL CHECK (request_count >= 0),
    counts jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(counts) = 'object'),
    created_at timestamptz NOT NULL DEFAULT now(),
    submitted_at timestamptz,
    ended_at timestamptz
);
CREATE INDEX IF NOT EXISTS llm_batches_job_idx ON public.llm_batches (job_id, created_at);

-- llm_batch_requests: per request, the cache keys (chunk content hashes, or a reduce request's
-- hash) of its parts, in order. Deleted once the batch's results are read.
CREATE TABLE IF NOT EXISTS public.llm_batch_requests (
    batch_id uuid NOT NULL REFERENCES public.llm_batches (id) ON DELETE CASCADE,
    custom_id text NOT NULL,
    content_hashes jsonb NOT NULL CHECK (jsonb_typeof(content_hashes) = 'array'),
    PRIMARY KEY (batch_id, custom_id)
);

ALTER TABLE public.llm_batches ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.llm_batch_requests ENABLE ROW LEVEL SECURITY;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['llm_batches', 'llm_batch_requests'] LOOP
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

-- Supabase's default privileges grant ALL on new tables to anon and authenticated: not these.
REVOKE ALL ON public.llm_batches, public.llm_batch_requests FROM PUBLIC, anon, authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.llm_batches, public.llm_batch_requests
    TO service_role;

-- ---------------------------------------------------------------------------------------------
-- Record a batch about to be submitted with its requests, all or nothing.
-- p_requests: [{"custom_id": "...", "content_hashes": ["...", ...]}, ...]. Returns the number
-- of request rows written.
CREATE OR REPLACE FUNCTION public.record_llm_batch(
    p_id uuid, p_job_id uuid, p_kind text, p_request_count integer, p_requests jsonb
) RETURNS integer
LANGUAGE plpgsql
SECURITY INVOKER
SET search_path = public, pg_temp
AS $$
DECLARE
    v_rows integer;
BEGIN
    INSERT INTO public.llm_batches (id, job_id, kind, state, request_count)
    VALUES (p_id, p_job_id, p_kind, 'submitting', p_request_count);
    INSERT INTO public.llm_batch_requests (batch_id, custom_id, content_hashes)
    SELECT p_id, r ->> 'custom_id', r -> 'content_hashes'
    FROM jsonb_array_elements(coalesce(p_requests, '[]'::jsonb)) AS r;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    RETURN v_rows;
END
$$;

-- Move a batch on; 'read' and 'abandoned' delete its request rows in the same transaction.
-- Returns false when there is no such batch.
CREATE OR REPLACE FUNCTION public.update_llm_batch(
    p_id uuid, p_state text, p_provider_batch_id text DEFAULT NULL, p_counts jsonb DEFAULT NULL
) RETURNS boolean
LANGUAGE plpgsql
SECURITY INVOKER
SET search_path = public, pg_temp
AS $$
BEGIN
    UPDATE public.llm_batches SET
        state = p_state,
        provider_batch_id = coalesce(p_provider_batch_id, provider_batch_id),
        counts = coalesce(p_counts, counts),
        submitted_at = CASE WHEN p_state = 'in_progress' THEN coalesce(submitted_at, now())
                            ELSE submitted_at END,
        ended_at = CASE WHEN p_state = 'ended' THEN coalesce(ended_at, now()) ELSE ended_at END
    WHERE id = p_id;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF p_state IN ('read', 'abandoned') THEN
        DELETE FROM public.llm_batch_requests WHERE batch_id = p_id;
    END IF;
    RETURN true;
END
$$;

REVOKE ALL ON FUNCTION
    public.record_llm_batch(uuid, uuid, text, integer, jsonb),
    public.update_llm_batch(uuid, text, text, jsonb)
FROM PUBLIC, anon, authenticated;

GRANT EXECUTE ON FUNCTION
    public.record_llm_batch(uuid, uuid, text, integer, jsonb),
    public.update_llm_batch(uuid, text, text, jsonb)
TO service_role;

NOTIFY pgrst, 'reload schema';
