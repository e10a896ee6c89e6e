#!/usr/bin/env bash
# valgrind memcheck on a subset of the Meson tests (issue 6): every 'unit' case and the
# server-close, basic-transport and transport-callback cases of 'net', through the
# 'valgrind' test setup of the top meson.build (--leak-check=full, definite, indirect and
# possible leaks are errors, --error-exitcode=1; no suppression file). Left out: the
# --registered list checks (no library code), the load tests whose point is volume (a
# million timers, 800k threadsafe calls, 32 MiB sendfile) and would take minutes each
# under valgrind, and the allocation-count test (valgrind replaces malloc).
#
#   tests/fuzz/valgrind.sh [BUILD_DIR]       default build-test/plain (a build with tests)
#
# Ends with "ok|FAIL valgrind suite: N passed, N failed"; exit status 1 on any failure.
set -u
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${1:-${BUILD_ROOT:-$src/build-test}/plain}
command -v valgrind >/dev/null || { echo "valgrind.sh: valgrind not installed" >&2; exit 1; }
ninja -C "$build" >/dev/null || exit 1

skip='/registered$|million_timers|threadsafe_wakeups_not_lost|threadsafe_8_threads|allocates_nothing'
mapfile -t names < <(
    for s in unit net-server net-transport; do meson test -C "$build" --list --suite "$s" 2>/dev/null; done |
        sed -n 's|^.* / ||p' | grep -E '^(test_(callbacks|debug|errors|lifecycle|signals|threads|timers|watchers|api_misuse)|test_server_close|test_transport_(basic|callbacks))/' |
        grep -Ev "$skip" | sort -u)
echo "valgrind.sh: ${#names[@]} tests under memcheck"
meson test -C "$build" --setup valgrind --print-errorlogs "${names[@]}"
rc=$?
python3 - "$build/meson-logs/testlog-valgrind.json" "$rc" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ok = sum(r.get("result") == "OK" for r in rows)
bad = len(rows) - ok
word = "ok" if bad == 0 and sys.argv[2] == "0" else "FAIL"
print("%s valgrind suite: %d passed, %d failed" % (word, ok, bad))
PY
exit $rc
