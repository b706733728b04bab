-- Operators steer the fleet (issue 11): an append-only audit trail of job events, cancel, forgetting
-- a user, the search behind a bulk retry, step-duration samples for stuck detection, and a fair
-- claim order (priority by size, with aging).
--
-- Idempotent like the earlier files: columns and tables only when missing, constraints checked
-- before they are added (NOT VALID: rows already there are neither rejected nor rewritten),
-- functions CREATE OR REPLACE. Functions are SECURITY INVOKER with EXECUTE for service_role only,
-- except forget_user_data (SECURITY DEFINER, see there). Must run after 20260301000100 and
-- 20261201000000, whose claim_next_job / finish_job / requeue_job it replaces.

-- ---------------------------------------------------------------------------------------------
-- processing_jobs: a cancel flag, the measured export size, and the 'canceled' status.
ALTER TABLE public.processing_jobs
    ADD COLUMN IF NOT EXISTS cancel_requested_at timestamptz,
    ADD COLUMN IF NOT EXISTS export_bytes bigint;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'processing_jobs_status_check'
          AND conrelid = 'public.processing_jobs'::regclass
          AND pg_get_constraintdef(oid) LIKE '%canceled%'
    ) THEN
        ALTER TABLE public.processing_jobs DROP CONSTRAINT IF EXISTS processing_jobs_status_check;
        ALTER TABLE public.processing_jobs
            ADD CONSTRAINT processing_jobs_status_check
            CHECK (status IN ('queued', 'running', 'complete', 'failed', 'canceled')) NOT VALID;
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'processing_jobs_export_bytes_check'
          AND conrelid = 'public.processing_jobs'::regclass
    ) THEN
        ALTER TABLE public.processing_jobs
            ADD CONSTRAINT processing_jobs_export_bytes_check CHECK (export_bytes >= 0) NOT VALID;
    END IF;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- processing_job_events: the audit trail. One row per moment of a job's life, never updated,
-- never deleted by retries. No foreign key to processing_jobs on purpose: a cascade would let
-- whoever may delete a job delete its history, and the trail must be writable even while a job
-- row is being replaced. `id` gives the order of appends; `at` is the database's clock.
CREATE TABLE IF NOT EXISTS public.processing_job_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id uuid NOT NULL,
    user_id uuid NOT NULL,
    kind text NOT NULL,
    attempt integer NOT NULL DEFAULT 0,
    worker_id text,
    step text,
    at timestamptz NOT NULL DEFAULT now(),
    detail jsonb NOT NULL DEFAULT '{}'::jsonb
);

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'processing_job_events_kind_check'
          AND conrelid = 'public.processing_job_events'::regclass
    ) THEN
        -- A shape, not a list: a newer service may add kinds without a migration.
        ALTER TABLE public.processing_job_events
            ADD CONSTRAINT processing_job_events_kind_check
            CHECK (kind ~ '^[a-z][a-z_]{0,39}$') NOT VALID;
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conname = 'processing_job_events_detail_check'
          AND conrelid = 'public.processing_job_events'::regclass
    ) THEN
        ALTER TABLE public.processing_job_events
            ADD CONSTRAINT processing_job_events_detail_check
            CHECK (jsonb_typeof(detail) = 'object') NOT VALID;
    END IF;
END
$$;

CREATE INDEX IF NOT EXISTS processing_job_events_job_idx
    ON public.processing_job_events (job_id, id);
CREATE INDEX IF NOT EXISTS processing_job_events_user_idx
    ON public.processing_job_events (user_id);
CREATE INDEX IF NOT EXISTS processing_job_events_step_durations_idx
    ON public.processing_job_events (step, id DESC) WHERE kind = 'step_completed';

-- Never updated, by anyone (the owner included): a trigger, on top of the grants below.
CREATE OR REPLACE FUNCTION public.processing_job_events_refuse_update()
RETURNS trigger
LANGUAGE plpgsql
SECURITY INVOKER
SET search_path = public, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'processing_job_events is append-only: event % cannot be changed', OLD.id
        USING ERRCODE = '42501';
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_trigger
        WHERE tgname = 'processing_job_events_append_only'
          AND tgrelid = 'public.processing_job_events'::regclass
    ) THEN
        CREATE TRIGGER processing_job_events_append_only
            BEFORE UPDATE ON public.processing_job_events
            FOR EACH ROW EXECUTE FUNCTION public.processing_job_events_refuse_update();
    END IF;
END
$$;

ALTER TABLE public.processing_job_events ENABLE ROW LEVEL SECURITY;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_policies
        WHERE schemaname = 'public' AND tablename = 'processing_job_events'
          AND policyname = 'service_role_read'
    ) THEN
        CREATE POLICY service_role_read ON public.processing_job_events
            FOR SELECT TO service_role USING (true);
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM pg_policies
        WHERE schemaname = 'public' AND tablename = 'processing_job_events'
          AND policyname = 'service_role_append'
    ) THEN
        CREATE POLICY service_role_append ON public.processing_job_events
            FOR INSERT TO service_role WITH CHECK (true);
    END IF;
END
$$;

-- Supabase's default privileges grant ALL on new tables to anon, authenticated and service_role:
-- take everything back, then give the service role reading and appending only. INSERT is granted
-- on the columns a writer may set, so `id` and `at` always come from the database.
REVOKE ALL ON public.processing_job_events FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON public.processing_job_events TO service_role;
GRANT INSERT (job_id, user_id, kind, attempt, worker_id, step, detail)
    ON public.processing_job_events TO service_role;

-- ---------------------------------------------------------------------------------------------
-- The fair claim order (app/queue_order.py holds the same rules for the local store).
CREATE OR REPLACE FUNCTION public.job_estimated_bytes(
    p_export_bytes bigint, p_message_count integer, p_conversation_count integer
) RETURNS bigint
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = public, pg_temp
AS $$
    SELECT CASE
        WHEN p_export_bytes IS NOT NULL THEN greatest(p_export_bytes, 0)
        ELSE greatest(
            greatest(coalesce(p_message_count, 0), 0)::bigint * 1500,
            greatest(coalesce(p_conversation_count, 0), 0)::bigint * 25000
        )
    END
$$;

CREATE OR REPLACE FUNCTION public.job_claim_penalty_seconds(
    p_export_bytes bigint, p_message_count integer, p_conversation_count integer
) RETURNS double precision
LANGUAGE sql
IMMUTABLE
SECURITY INVOKER
SET search_path = public, pg_temp
AS $$
    SELECT least(
        3600.0::double precision,
        public.job_estimated_bytes(p_export_bytes, p_message_count, p_conversation_count)
            / 1048576.0::double precision * 3.6
    )
$$;

-- Lease the due job that comes first in the fair order: `run_after + penalty(size)`, then the
-- oldest. With p_small_only, only jobs of at most 25 MB (estimated) are taken: a small-job slot.
-- The earlier two-argument version is dropped so PostgREST sees one function, not an overload.
DROP FUNCTION IF EXISTS public.claim_next_job(text, integer);

CREATE OR REPLACE FUNCTION public.claim_next_job(
    p_worker_id text, p_lease_seconds integer, p_small_only boolean DEFAULT false
) RETURNS SETOF public.processing_jobs
LANGUAGE plpgsql
SECURITY INVOKER
SET search_path = public, pg_temp
AS $$
DECLARE
    v_id uuid;
BEGIN
    IF p_worker_id IS NULL OR p_worker_id = '' OR p_lease_seconds IS NULL OR p_lease_seconds < 0 THEN
        RAISE EXCEPTION 'claim_next_job: a worker id and a lease of 0 or more seconds are required'
            USING ERRCODE = '22023';
    END IF;
    SELECT j.id INTO v_id FROM public.processing_jobs j
    WHERE ((j.status = 'queued' AND j.run_after <= now())
        OR (j.status = 'running' AND j.lease_expires_at < now()
            -- A worker never takes over its own job: it still runs it, its lease only lapsed
            -- (the store was out of reach for a heartbeat or two).
            AND j.lease_owner IS DISTINCT FROM p_worker_id))
      AND (NOT coalesce(p_small_only, false)
           OR public.job_estimated_bytes(j.export_bytes, j.message_count, j.conversation_count)
              <= 26214400)
    ORDER BY j.run_after + make_interval(secs => public.job_claim_penalty_seconds(
                 j.export_bytes, j.message_count, j.conversation_count)),
             j.created_at, j.id
    LIMIT 1
    FOR UPDATE SKIP LOCKED;
    IF v_id IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
    UPDATE public.processing_jobs SET
        status = 'running',
        lease_owner = p_worker_id,
        lease_expires_at = now() + make_interval(secs => p_lease_seconds),
        heartbeat_at = now(),
        started_at = coalesce(started_at, now()),
        attempts = attempts + 1,
        updated_at = now()
    WHERE id = v_id
    RETURNING *;
END
$$;

-- End the holder's lease (issue 9 and 11): complete / failed / canceled are final; queued goes back
-- on the queue at p_run_after, in no step and with its progress from zero (its paid work is
-- cached), the attempt given back when p_count_attempt is false (a release is no failure).
CREATE OR REPLACE FUNCTION public.finish_job(
    p_job_id uuid,
    p_worker_id text,
    p_status text,
    p_error text DEFAULT NULL,
    p_run_after timestamptz DEFAULT NULL,
    p_count_attempt boolean DEFAULT true
) RETURNS boolean
LANGUAGE plpgsql
SECURITY INVOKER
SET search_path = public, pg_temp
AS $$
BEGIN
    IF p_status IS NULL OR p_status NOT IN ('complete', 'failed', 'queued', 'canceled') THEN
        RAISE EXCEPTION 'finish_job: status must be complete, failed, canceled or queued, not %',
            p_status
            USING ERRCODE = '22023';
    END IF;
    UPDATE public.processing_jobs SET
        status = p_status,
        error_message = p_error,
        lease_owner = NULL,
        lease_expires_at = NULL,
        completed_at = CASE WHEN p_status = 'queued' THEN NULL ELSE now() END,
        progress = CASE
            WHEN p_status = 'complete' THEN 100
            WHEN p_status = 'queued' THEN 0
            ELSE progress
        END,
        current_step = CASE WHEN p_status = 'queued' THEN NULL ELSE current_step END,
        run_after = CASE WHEN p_status = 'queued' THEN coalesce(p_run_after, now()) ELSE run_after END,
        attempts = CASE
            WHEN p_status = 'queued' AND NOT coalesce(p_count_attempt, true)
            THEN greatest(attempts - 1, 0)
            ELSE attempts
        END,
        updated_at = now()
    WHERE id = p_job_id AND lease_owner = p_worker_id AND status = 'running';
    RETURN FOUND;
END
$$;

-- As in 20260301000100, and a retried job starts without the cancel flag of its last run.
CREATE OR REPLACE FUNCTION public.requeue_job(p_job_id uuid)
RETURNS public.processing_jobs
LANGUAGE plpgsql
SECURITY INVOKER
SET search_path = public, pg_temp
AS $$
DECLARE
    v_job public.processing_jobs;
BEGIN
    SELECT * INTO v_job FROM public.processing_jobs WHERE id = p_job_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'requeue_job: no processing_jobs row with id %', p_job_id
            USING ERRCODE = 'P0002', HINT = 'Check the job id.';
    END IF;
    IF v_job.status <> 'failed' THEN
        RAISE EXCEPTION 'requeue_job: job % is %, not failed: only a failed job can be retried',
            p_job_id, v_job.status
            USING ERRCODE = 'P0001', HINT = 'Wait for the job to fail, or leave it running.';
    END IF;
    UPDATE public.processing_jobs SET
        status = 'queued',
        attempts = 0,
        error_message = NULL,
        run_after = now(),
        completed_at = NULL,
        lease_owner = NULL,
        lease_expires_at = NULL,
        cancel_requested_at = NULL,
        updated_at = now()
    WHERE id = p_job_id
    RETURNING * INTO v_job;
    RETURN v_job;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Cancel: a queued job (or a running one whose worker is gone: its lease expired) is withdrawn
-- at once; a running job gets cancel_requested_at and its runner stops it at the next call or
-- step boundary (finish_job(..., 'canceled')). Returns {job, outcome}.
CREATE OR REPLACE FUNCTION public.cancel_job(p_job_id uuid, p_message text)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY INVOKER
SET search_path = public, pg_temp
AS $$
DECLARE
    v_job public.processing_jobs;
    v_outcome text;
BEGIN
    SELECT * INTO v_job FROM public.processing_jobs WHERE id = p_job_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'cancel_job: no processing_jobs row with id %', p_job_id
            USING ERRCODE = 'P0002', HINT = 'Check the job id.';
    END IF;
    IF v_job.status IN ('complete', 'failed') THEN
        RAISE EXCEPTION 'cancel_job: job % is %: only a queued or running job can be canceled',
            p_job_id, v_job.status
            USING ERRCODE = 'P0001';
    END IF;
    IF v_job.status = 'canceled' THEN
        v_outcome := 'already_canceled';
    ELSIF v_job.status = 'queued' OR coalesce(v_job.lease_expires_at < now(), true) THEN
        UPDATE public.processing_jobs SET
            status = 'canceled',
            cancel_requested_at = coalesce(cancel_requested_at, now()),
            completed_at = now(),
            error_message = p_message,
            lease_owner = NULL,
            lease_expires_at = NULL,
            updated_at = now()
        WHERE id = p_job_id
        RETURNING * INTO v_job;
        v_outcome := 'canceled';
    ELSE
        UPDATE public.processing_jobs SET
            cancel_requested_at = coalesce(cancel_requested_at, now()),
            updated_at = now()
        WHERE id = p_job_id
        RETURNING * INTO v_job;
        v_outcome := 'cancel_requested';
    END IF;
    RETURN jsonb_build_object('job', to_jsonb(v_job), 'outcome', v_outcome);
END
$$;

-- ---------------------------------------------------------------------------------------------
-- The search behind a bulk retry: failed jobs matching every given filter, exactly (no LIKE
-- wildcards), with the user's later or active job if one stands in the way. A page of at most
-- 500 rows in id order; the caller passes the last id it saw as p_after.
CREATE OR REPLACE FUNCTION public.find_failed_jobs(
    p_since timestamptz DEFAULT NULL,
    p_until timestamptz DEFAULT NULL,
    p_error_contains text DEFAULT NULL,
    p_step text DEFAULT NULL,
    p_user_id uuid DEFAULT NULL,
    p_after uuid DEFAULT NULL,
    p_limit integer DEFAULT 500
) RETURNS TABLE (
    id uuid,
    user_id uuid,
    error_message text,
    attempts integer,
    created_at timestamptz,
    failed_at timestamptz,
    later_job_id uuid,
    later_job_status text
)
LANGUAGE sql
STABLE
SECURITY INVOKER
SET search_path = public, pg_temp
AS $$
    SELECT j.id, j.user_id, j.error_message, j.attempts, j.created_at, j.completed_at,
           later.id, later.status
    FROM public.processing_jobs j
    LEFT JOIN LATERAL (
        SELECT l.id, l.status FROM public.processing_jobs l
        WHERE l.user_id = j.user_id AND l.id <> j.id
          AND (l.created_at > j.created_at OR l.status IN ('queued', 'running'))
        ORDER BY (l.status IN ('queued', 'running')) DESC, l.created_at DESC
        LIMIT 1
    ) later ON true
    WHERE j.status = 'failed'
      AND (p_since IS NULL OR j.completed_at >= p_since)
      AND (p_until IS NULL OR j.completed_at < p_until)
      AND (p_error_contains IS NULL
           OR strpos(lower(coalesce(j.error_message, '')), lower(p_error_contains)) > 0)
      AND (p_step IS NULL OR left(coalesce(j.error_message, ''), length(p_step) + 2) = p_step || ': ')
      AND (p_user_id IS NULL OR j.user_id = p_user_id)
      AND (p_after IS NULL OR j.id > p_after)
    ORDER BY j.id
    LIMIT least(greatest(coalesce(p_limit, 500), 1), 500)
$$;

-- ---------------------------------------------------------------------------------------------
-- Stuck detection's history: the latest p_per_step step_completed samples of each step named in
-- p_steps (comma-separated: plain text travels the same through every PostgREST), as
-- {step: [[duration_ms, units], ...]} (newest first). One jsonb value, so PostgREST's row cap
-- does not apply; each step reads its own slice of the partial index.
CREATE OR REPLACE FUNCTION public.recent_step_durations(p_steps text, p_per_step integer DEFAULT 500)
RETURNS jsonb
LANGUAGE sql
STABLE
SECURITY INVOKER
SET search_path = public, pg_temp
AS $$
    SELECT coalesce(jsonb_object_agg(s.step, s.samples), '{}'::jsonb)
    FROM (
        SELECT named.step, (
            SELECT coalesce(jsonb_agg(jsonb_build_array(x.duration_ms, x.units)), '[]'::jsonb)
            FROM (
                SELECT (e.detail ->> 'duration_ms')::double precision AS duration_ms,
                       CASE WHEN jsonb_typeof(e.detail -> 'units') = 'number'
                            THEN (e.detail ->> 'units')::double precision END AS units
                FROM public.processing_job_events e
                WHERE e.kind = 'step_completed' AND e.step = named.step
                  AND jsonb_typeof(e.detail -> 'duration_ms') = 'number'
                ORDER BY e.id DESC
                LIMIT least(greatest(coalesce(p_per_step, 500), 1), 5000)
            ) x
        ) AS samples
        FROM unnest(string_to_array(p_steps, ',')) AS named(step)
    ) s
$$;

-- ---------------------------------------------------------------------------------------------
-- Forget a user: the service's own rows for them — job events, jobs, cached facts — and their
-- conversation_chunks (with the record of which import they were) only when p_include_chunks. Refused (P0001) while a job of theirs is queued
-- or running. Returns the counts and the removed job ids (to clean temp files by).
--
-- SECURITY DEFINER, the one exception here: the service role may not delete job events (the
-- trail is append-only for it), and forgetting a user is the one time they must go. The function
-- runs with its owner's rights but can only do this: delete one user's rows, in one transaction,
-- after checking that none of their jobs is active. search_path is pinned and every name
-- qualified; EXECUTE is granted to service_role alone.
CREATE OR REPLACE FUNCTION public.forget_user_data(
    p_user_id uuid, p_include_chunks boolean DEFAULT false
) RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    v_active public.processing_jobs;
    v_job_ids uuid[];
    v_events integer;
    v_jobs integer;
    v_cache integer;
    v_chunks integer := 0;
BEGIN
    IF p_user_id IS NULL THEN
        RAISE EXCEPTION 'forget_user_data: a user id is required' USING ERRCODE = '22023';
    END IF;
    SELECT * INTO v_active FROM public.processing_jobs
    WHERE user_id = p_user_id AND status IN ('queued', 'running')
    LIMIT 1
    FOR UPDATE;
    IF FOUND THEN
        RAISE EXCEPTION 'forget_user_data: user % has a % job (%)', p_user_id, v_active.status,
            v_active.id
            USING ERRCODE = 'P0001',
                  HINT = 'Cancel the job first, and wait until it has stopped.';
    END IF;
    SELECT coalesce(array_agg(j.id), '{}') INTO v_job_ids
    FROM public.processing_jobs j WHERE j.user_id = p_user_id;
    DELETE FROM public.processing_job_events e
    WHERE e.user_id = p_user_id OR e.job_id = ANY (v_job_ids);
    GET DIAGNOSTICS v_events = ROW_COUNT;
    DELETE FROM public.processing_jobs j WHERE j.user_id = p_user_id;
    GET DIAGNOSTICS v_jobs = ROW_COUNT;
    DELETE FROM public.fact_extraction_cache c WHERE c.user_id = p_user_id;
    GET DIAGNOSTICS v_cache = ROW_COUNT;
    IF coalesce(p_include_chunks, false) THEN
        DELETE FROM public.conversation_chunks c WHERE c.user_id = p_user_id;
        GET DIAGNOSTICS v_chunks = ROW_COUNT;
        -- And the record of which import the chunks were (20261201000000), where it exists.
        IF to_regclass('public.conversation_chunk_imports') IS NOT NULL THEN
            EXECUTE 'DELETE FROM public.conversation_chunk_imports WHERE user_id = $1'
                USING p_user_id;
        END IF;
    END IF;
    RETURN jsonb_build_object(
        'jobs', v_jobs, 'events', v_events, 'fact_cache', v_cache, 'chunks', v_chunks,
        'job_ids', to_jsonb(v_job_ids)
    );
END
$$;

REVOKE ALL ON FUNCTION
    public.processing_job_events_refuse_update(),
    public.job_estimated_bytes(bigint, integer, integer),
    public.job_claim_penalty_seconds(bigint, integer, integer),
    public.claim_next_job(text, integer, boolean),
    public.finish_job(uuid, text, text, text, timestamptz, boolean),
    public.requeue_job(uuid),
    public.cancel_job(uuid, text),
    public.find_failed_jobs(timestamptz, timestamptz, text, text, uuid, uuid, integer),
    public.recent_step_durations(text, integer),
    public.forget_user_data(uuid, boolean)
FROM PUBLIC, anon, authenticated;

GRANT EXECUTE ON FUNCTION
    public.job_estimated_bytes(bigint, integer, integer),
    public.job_claim_penalty_seconds(bigint, integer, integer),
    public.claim_next_job(text, integer, boolean),
    public.finish_job(uuid, text, text, text, timestamptz, boolean),
    public.requeue_job(uuid),
    public.cancel_job(uuid, text),
    public.find_failed_jobs(timestamptz, timestamptz, text, text, uuid, uuid, integer),
    public.recent_step_durations(text, integer),
    public.forget_user_data(uuid, boolean)
TO service_role;

NOTIFY pgrst, 'reload schema';
