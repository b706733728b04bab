#!/usr/bin/env bash
# Make sure Debian's chromium is at /usr/bin/chromium: the ops page's browser tests drive it
# through Playwright's Python package, which never downloads a browser of its own (and could
# not: such downloads are blocked here). Installs it with apt when it is missing (as root, or
# with password-less sudo); otherwise says loudly what is missing — the browser tests fail, not
# skip, without it.
set -u
CHROMIUM=/usr/bin/chromium
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
run_as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi
}
if command -v apt-get >/dev/null 2>&1; then
  echo "ensure-chromium: installing Debian's chromium (apt-get install chromium)" >&2
  export DEBIAN_FRONTEND=noninteractive
  run_as_root apt-get update -qq >&2 && run_as_root apt-get install -y -qq chromium >&2
  if [ -x "$CHROMIUM" ]; then
    exit 0
  fi
fi
cat >&2 <<'MSG'
ensure-chromium: Debian's chromium is not at /usr/bin/chromium and could not be installed.
The ops page's browser tests (tests/ops/test_ops_browser.py) need it. As root:
    apt-get update && apt-get install -y chromium
MSG
exit 1
