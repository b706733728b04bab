"""The ops page at /ops (issue 12): the queue at a glance, running and failed jobs, each job's
trail; server-rendered, signed in with RLM_API_KEY."""
