#!/usr/bin/env bash
# Make sure the PostgreSQL the tests use answers at 127.0.0.1:5432. Starts the machine's cluster
# when it is installed but stopped; otherwise says loudly what is missing (the tests will fail,
# not skip, without it).
set -u
if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  exit 0
fi
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  echo "ensure-postgres: starting the local PostgreSQL cluster" >&2
  for version in $(ls /etc/postgresql); do
    pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 || true
  done
  for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 -p 5432 && exit 0
    sleep 1
  done
fi
cat >&2 <<'MSG'
ensure-postgres: PostgreSQL is not answering at 127.0.0.1:5432.
The migration and Supabase-store tests need it (trust auth, user postgres or root).
On Debian: apt-get install postgresql, then
    pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start
MSG
exit 1
