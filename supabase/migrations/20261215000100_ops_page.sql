-- The ops page (issue 12): jobs that ended, per hour, and what they cost, for its charts; and an
-- index for its lists of jobs of one status, newest first. Idempotent like the files before it;
-- SECURITY INVOKER with EXECUTE for service_role only.

CREATE INDEX IF NOT EXISTS processing_jobs_status_completed_idx
    ON public.processing_jobs (status, completed_at DESC);

-- Jobs whose status is final with completed_at >= p_since, per UTC hour, oldest first:
-- [{hour, complete, failed, canceled, cost_usd}, ...]. One jsonb value (PostgREST's row cap
-- does not apply); at most 24 × the days asked for.
CREATE OR REPLACE FUNCTION public.ops_finished_jobs_by_hour(p_since timestamptz)
RETURNS jsonb
LANGUAGE sql
STABLE
SECURITY INVOKER
SET search_path = public, pg_temp
AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'hour', h.hour, 'complete', h.complete, 'failed', h.failed,
               'canceled', h.canceled, 'cost_usd', h.cost_usd) ORDER BY h.hour), '[]'::jsonb)
    FROM (
        SELECT date_trunc('hour', j.completed_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS hour,
               count(*) FILTER (WHERE j.status = 'complete') AS complete,
               count(*) FILTER (WHERE j.status = 'failed') AS failed,
               count(*) FILTER (WHERE j.status = 'canceled') AS canceled,
               coalesce(sum(j.cost_usd), 0) AS cost_usd
        FROM public.processing_jobs j
        WHERE j.status IN ('complete', 'failed', 'canceled') AND j.completed_at >= p_since
        GROUP BY 1
    ) h
$$;

REVOKE ALL ON FUNCTION public.ops_finished_jobs_by_hour(timestamptz)
FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION public.ops_finished_jobs_by_hour(timestamptz) TO service_role;

NOTIFY pgrst, 'reload schema';
