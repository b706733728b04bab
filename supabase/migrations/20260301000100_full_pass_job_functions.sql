-- Full pass (soulprint-rlm): the job queue's functions, called over PostgREST RPC
-- (POST /rest/v1/rpc/<name>) by the service role.
--
-- SECURITY INVOKER on purpose: they run with the caller's rights (the service role, which holds the
-- table grants and the RLS policy), so granting EXECUTE never lends anyone more than they already
-- have. EXECUTE is revoked from PUBLIC, anon and authenticated, and granted to service_role only.
-- `CREATE OR REPLACE` keeps this file idempotent; the NOTIFY at the end makes PostgREST reload its
-- schema cache (otherwise a new function answers 404 PGRST202 until the next restart).

-- Return the user's active (queued/running) job, or create a queued one.
-- Race-safe: two concurrent calls both miss the SELECT, one INSERT wins, the other hits the
-- partial unique index (23505) and loops to return the winner's row.
CREATE OR REPLACE FUNCTION public.enqueue_full_pass_job(
    p_user_id uuid,
    p_storage_path text,
    p_conversation_count integer DEFAULT NULL,
    p_message_count integer DEFAULT NULL,
    p_pipeline_version text DEFAULT 'v2',
    p_max_attempts integer DEFAULT 3,
    p_force boolean DEFAULT false
) RETURNS jsonb
LANGUAGE plpgsql
SECURITY INVOKER
SET search_path = public, pg_temp
AS $$
DECLARE
    v_job public.processing_jobs;
BEGIN
    FOR attempt IN 1..5 LOOP
        SELECT * INTO v_job FROM public.processing_jobs
        WHERE user_id = p_user_id AND status IN ('queued', 'running')
        ORDER BY created_at DESC
        LIMIT 1;
        IF FOUND THEN
            RETURN jsonb_build_object('job', to_jsonb(v_job), 'created', false);
        END IF;
        BEGIN
            INSERT INTO public.processing_jobs (
                user_id, storage_path, conversation_count, message_count,
                pipeline_version, max_attempts, force
            ) VALUES (
                p_user_id, p_storage_path, p_conversation_count, p_message_count,
                coalesce(p_pipeline_version, 'v2'), coalesce(p_max_attempts, 3),
                coalesce(p_force, false)
            )
            RETURNING * INTO v_job;
            RETURN jsonb_build_object('job', to_jsonb(v_job), 'created', true);
        EXCEPTION WHEN unique_violation THEN
            -- Another request created the active job after our SELECT: loop and return it.
            NULL;
        END;
    END LOOP;
    RAISE EXCEPTION 'enqueue_full_pass_job: could not create or find the active job for user %', p_user_id
        USING ERRCODE = '40001', HINT = 'Retry the request.';
END
$$;

-- Lease the oldest due job: queued and due, or running with an expired lease (its worker died).
-- SKIP LOCKED lets concurrent claimers pass over a row another one is taking; the row lock plus the
-- re-checked WHERE clause make a double claim impossible.
CREATE OR REPLACE FUNCTION public.claim_next_job(p_worker_id text, p_lease_seconds integer)
RETURNS SETOF public.processing_jobs
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
    SELECT id INTO v_id FROM public.processing_jobs
    WHERE (status = 'queued' AND run_after <= now())
       OR (status = 'running' AND lease_expires_at < now())
    ORDER BY run_after, created_at
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

-- Extend the lease; false when this worker no longer holds it (reclaimed, finished).
CREATE OR REPLACE FUNCTION public.renew_job_lease(
    p_job_id uuid, p_worker_id text, p_lease_seconds integer
) RETURNS boolean
LANGUAGE plpgsql
SECURITY INVOKER
SET search_path = public, pg_temp
AS $$
BEGIN
    UPDATE public.processing_jobs SET
        lease_expires_at = now() + make_interval(secs => p_lease_seconds),
        heartbeat_at = now(),
        updated_at = now()
    WHERE id = p_job_id AND lease_owner = p_worker_id AND status = 'running';
    RETURN FOUND;
END
$$;

-- End the holder's lease. complete/failed are final; queued goes back on the queue at p_run_after
-- (with the attempt given back when p_count_attempt is false: a release on shutdown is no failure).
-- False, and nothing changed, when p_worker_id does not hold the running job.
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
    IF p_status IS NULL OR p_status NOT IN ('complete', 'failed', 'queued') THEN
        RAISE EXCEPTION 'finish_job: status must be complete, failed or queued, not %', p_status
            USING ERRCODE = '22023';
    END IF;
    UPDATE public.processing_jobs SET
        status = p_status,
        error_message = p_error,
        lease_owner = NULL,
        lease_expires_at = NULL,
        completed_at = CASE WHEN p_status = 'queued' THEN NULL ELSE now() END,
        progress = CASE WHEN p_status = 'complete' THEN 100 ELSE progress END,
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

-- Operator retry: a failed job goes back on the queue with its attempts reset.
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
        updated_at = now()
    WHERE id = p_job_id
    RETURNING * INTO v_job;
    RETURN v_job;
END
$$;

REVOKE ALL ON FUNCTION
    public.enqueue_full_pass_job(uuid, text, integer, integer, text, integer, boolean),
    public.claim_next_job(text, integer),
    public.renew_job_lease(uuid, text, integer),
    public.finish_job(uuid, text, text, text, timestamptz, boolean),
    public.requeue_job(uuid)
FROM PUBLIC, anon, authenticated;

GRANT EXECUTE ON FUNCTION
    public.enqueue_full_pass_job(uuid, text, integer, integer, text, integer, boolean),
    public.claim_next_job(text, integer),
    public.renew_job_lease(uuid, text, integer),
    public.finish_job(uuid, text, text, text, timestamptz, boolean),
    public.requeue_job(uuid)
TO service_role;

NOTIFY pgrst, 'reload schema';
