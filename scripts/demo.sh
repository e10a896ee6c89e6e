#!/usr/bin/env bash
# Builds libaioloop and runs the demo: the echo server on an ephemeral port, and the echo
# client sending 10,000 messages through it and checking every byte.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null

out=$(mktemp)
trap 'rm -f "$out"; [ -n "${server:-}" ] && kill "$server" 2>/dev/null || true' EXIT
./build/examples/echo_server --host 127.0.0.1 --port 0 >"$out" &
server=$!
for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.05; done
cat "$out"
port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$out" | head -n1)
[ -n "$port" ] || { echo "demo: the echo server did not start" >&2; exit 1; }

./build/examples/echo_client --host 127.0.0.1 --port "$port" --count 10000 --size 1024
./build/examples/echo_client --host 127.0.0.1 --port "$port" --count 100 --size 1048576

kill -TERM "$server"
wait "$server"
echo "demo: echo server shut down cleanly on SIGTERM"
server=
