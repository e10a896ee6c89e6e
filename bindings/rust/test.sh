#!/usr/bin/env bash
# Builds and tests the Rust binding against an already-built libaioloop.
#
#   bash bindings/rust/test.sh        (from the repository root)
#
# AIOL_BUILD_DIR: the Meson build directory (absolute or relative to the repository root;
# default "build"); its meson-uninstalled/ holds the aioloop pkg-config file.
# CARGO_TARGET_DIR defaults to bindings/rust/target.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=${AIOL_BUILD_DIR:-build}
case $build in /*) ;; *) build=$repo/$build ;; esac
if [ ! -d "$build/meson-uninstalled" ]; then
    echo "test.sh: $build/meson-uninstalled not found: build the C library first (AIOL_BUILD_DIR=$build)" >&2
    exit 1
fi
export PKG_CONFIG_PATH=$build/meson-uninstalled${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$here/target}
cd "$here"

locked=()
[ -f Cargo.lock ] && locked=(--locked)

if command -v rustup >/dev/null 2>&1; then
    rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

echo "== cargo fmt --check"
if cargo fmt --version >/dev/null 2>&1; then
    cargo fmt --all -- --check
else
    echo "SKIP: rustfmt is not installed"
fi

echo "== cargo clippy"
if cargo clippy --version >/dev/null 2>&1; then
    cargo clippy "${locked[@]}" --workspace --all-targets -- -D warnings
else
    echo "SKIP: clippy is not installed"
fi

echo "== cargo build --examples"
cargo build "${locked[@]}" --workspace --examples

echo "== echo_server smoke test"
exe=$CARGO_TARGET_DIR/debug/examples/echo_server
out=$(mktemp)
"$exe" --host 127.0.0.1 --port 0 >"$out" &
pid=$!
port=
for _ in $(seq 50); do
    port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$out")
    [ -n "$port" ] && break
    sleep 0.1
done
rm -f "$out"
if [ -z "$port" ]; then
    kill "$pid" 2>/dev/null || true
    echo "echo_server did not print its address" >&2
    exit 1
fi
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'ping\n' >&3
read -r -t 5 reply <&3
exec 3>&-
[ "$reply" = ping ] || { kill "$pid"; echo "echo_server replied '$reply'" >&2; exit 1; }
kill -INT "$pid"
wait "$pid" || { echo "echo_server exited with $? after SIGINT" >&2; exit 1; }
echo "echo_server: ok"

echo "== cargo test"
cargo test "${locked[@]}" --workspace
