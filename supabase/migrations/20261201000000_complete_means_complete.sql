-- Full pass (soulprint-rlm), issue 9: an import's chunks are all-or-nothing, and a job says in
-- words what it is waiting for. Idempotent, like the files before it.

-- ---------------------------------------------------------------------------------------------
-- processing_jobs.note: "waiting for Anthropic: rate limited since 10:02 UTC", "queued to retry
-- (attempt 2 of 3) at 10:05:00 UTC, after extract_facts failed", "v2 skipped: …".
ALTER TABLE public.processing_jobs ADD COLUMN IF NOT EXISTS note text;

-- (finish_job's new body — a job put back on the queue is in no step and its progress starts again
-- — is in 20261201100000_operator_fleet.sql, which replaces the function with 'canceled' too.)

-- ---------------------------------------------------------------------------------------------
-- conversation_chunks: which import a row belonged to before this one re-tagged it, so a pass
-- that fails for good can put the user's chunks back as the last complete import left them.
-- Text, not uuid: 'none' marks a row that existed with no import id (written by an earlier
-- version); NULL marks a row this import created.
ALTER TABLE public.conversation_chunks ADD COLUMN IF NOT EXISTS prior_import_job_id text;

-- The import whose chunks are the user's chunks, set atomically with the removal of the rest.
CREATE TABLE IF NOT EXISTS public.conversation_chunk_imports (
    user_id uuid PRIMARY KEY,
    import_job_id uuid NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE public.conversation_chunk_imports ENABLE ROW LEVEL SECURITY;
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_policies
        WHERE schemaname = 'public' AND tablename = 'conversation_chunk_imports'
          AND policyname = 'service_role_full_access'
    ) THEN
        CREATE POLICY service_role_full_access ON public.conversation_chunk_imports
            FOR ALL TO service_role USING (true) WITH CHECK (true);
    END IF;
END
$$;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.conversation_chunk_imports TO service_role;

-- Upsert one batch of an import's chunks in one statement. Conflict-proof by construction:
-- rows are de-duplicated by id (an export that holds the same conversation twice yields the same
-- ids, and ON CONFLICT may not touch a row twice in one statement: 21000, a 500 that retrying
-- never fixes) and written in id order (two writers of overlapping batches — the minute a deploy
-- overlaps two instances — take row locks in the same order and cannot deadlock). Another user's
-- row is never touched. Never names `embedding`. Returns the rows written.
CREATE OR REPLACE FUNCTION public.save_conversation_chunks(
    p_user_id uuid, p_job_id uuid, p_rows jsonb
) RETURNS integer
LANGUAGE plpgsql
SECURITY INVOKER
SET search_path = public, pg_temp
AS $$
DECLARE
    v_count integer;
BEGIN
    INSERT INTO public.conversation_chunks AS c (
        id, user_id, conversation_id, title, content, message_count, created_at, updated_at,
        is_recent, chunk_tier, chunk_index, content_hash, import_job_id, prior_import_job_id
    )
    SELECT DISTINCT ON (r.id)
        r.id, p_user_id, r.conversation_id, r.title, r.content, r.message_count, r.created_at,
        coalesce(r.updated_at, now()), coalesce(r.is_recent, false),
        coalesce(r.chunk_tier, 'medium'), r.chunk_index, r.content_hash, p_job_id, NULL
    FROM jsonb_to_recordset(p_rows) AS r(
        id uuid, conversation_id text, title text, content text, message_count integer,
        created_at timestamptz, updated_at timestamptz, is_recent boolean, chunk_tier text,
        chunk_index integer, content_hash text
    )
    ORDER BY r.id
    ON CONFLICT (id) DO UPDATE SET
        conversation_id = EXCLUDED.conversation_id,
        title = EXCLUDED.title,
        content = EXCLUDED.content,
        message_count = EXCLUDED.message_count,
        created_at = EXCLUDED.created_at,
        updated_at = EXCLUDED.updated_at,
        is_recent = EXCLUDED.is_recent,
        chunk_tier = EXCLUDED.chunk_tier,
        chunk_index = EXCLUDED.chunk_index,
        content_hash = EXCLUDED.content_hash,
        prior_import_job_id = CASE
            WHEN c.import_job_id IS NOT DISTINCT FROM EXCLUDED.import_job_id
            THEN c.prior_import_job_id
            ELSE coalesce(c.import_job_id::text, 'none')
        END,
        import_job_id = EXCLUDED.import_job_id
    WHERE c.user_id = p_user_id;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;

-- The import is whole: its rows become the user's chunks, every other row of the user goes.
-- Returns the rows removed.
CREATE OR REPLACE FUNCTION public.commit_conversation_chunks(p_user_id uuid, p_job_id uuid)
RETURNS integer
LANGUAGE plpgsql
SECURITY INVOKER
SET search_path = public, pg_temp
AS $$
DECLARE
    v_removed integer;
BEGIN
    DELETE FROM public.conversation_chunks
    WHERE user_id = p_user_id AND import_job_id IS DISTINCT FROM p_job_id;
    GET DIAGNOSTICS v_removed = ROW_COUNT;
    INSERT INTO public.conversation_chunk_imports (user_id, import_job_id, committed_at)
    VALUES (p_user_id, p_job_id, now())
    ON CONFLICT (user_id) DO UPDATE
        SET import_job_id = EXCLUDED.import_job_id, committed_at = EXCLUDED.committed_at;
    RETURN v_removed;
END
$$;

-- The import failed for good before it was whole: remove the rows it created, give the rows it
-- re-tagged back to the import they belonged to. A no-op for a committed import.
CREATE OR REPLACE FUNCTION public.rollback_conversation_chunks(p_user_id uuid, p_job_id uuid)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY INVOKER
SET search_path = public, pg_temp
AS $$
DECLARE
    v_removed integer := 0;
    v_restored integer := 0;
BEGIN
    IF EXISTS (
        SELECT 1 FROM public.conversation_chunk_imports
        WHERE user_id = p_user_id AND import_job_id = p_job_id
    ) THEN
        RETURN jsonb_build_object('removed', 0, 'restored', 0);
    END IF;
    DELETE FROM public.conversation_chunks
    WHERE user_id = p_user_id AND import_job_id = p_job_id AND prior_import_job_id IS NULL;
    GET DIAGNOSTICS v_removed = ROW_COUNT;
    UPDATE public.conversation_chunks SET
        import_job_id = nullif(prior_import_job_id, 'none')::uuid,
        prior_import_job_id = NULL
    WHERE user_id = p_user_id AND import_job_id = p_job_id;
    GET DIAGNOSTICS v_restored = ROW_COUNT;
    RETURN jsonb_build_object('removed', v_removed, 'restored', v_restored);
END
$$;

REVOKE ALL ON FUNCTION
    public.save_conversation_chunks(uuid, uuid, jsonb),
    public.commit_conversation_chunks(uuid, uuid),
    public.rollback_conversation_chunks(uuid, uuid)
FROM PUBLIC, anon, authenticated;
GRANT EXECUTE ON FUNCTION
    public.save_conversation_chunks(uuid, uuid, jsonb),
    public.commit_conversation_chunks(uuid, uuid),
    public.rollback_conversation_chunks(uuid, uuid)
TO service_role;

NOTIFY pgrst, 'reload schema';
