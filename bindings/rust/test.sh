#!/usr/bin/env bash
# Builds and tests the Rust binding against an already-built libaioloop.
#
#   bash bindings/rust/test.sh        (from the repository root)
#
# AIOL_BUILD_DIR: the Meson build directory (absolute or relative to the repository root;
# default "build"); its meson-uninstalled/ holds the aioloop pkg-config file.
# CARGO_TARGET_DIR defaults to bindings/rust/target.
#
# AIOL_RUST_ASAN=1 with AIOL_BUILD_DIR a GCC sanitizer build (-Db_sanitize=address,undefined
# -Db_lundef=false): runs only the test binaries (not doctests, which take no runner on
# stable), each with the library's own libasan/libubsan preloaded (ASan must come first in
# the library list) and leak checking on; rustc and the tools the tests spawn run without it.
# CARGO_TARGET_DIR then defaults to bindings/rust/target/asan.
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
[ -n "${AIOL_RUST_ASAN:-}" ] && export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$here/target/asan}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$here/target}
cd "$here"

locked=()
[ -f Cargo.lock ] && locked=(--locked)

if [ -n "${AIOL_RUST_ASAN:-}" ]; then
    lib=$build/lib/libaioloop.so
    rt=$(ldd "$lib" | awk '/lib(asan|ubsan)\.so/ {print $3}' | paste -sd: -)
    case $rt in
        *libasan*) ;;
        *) echo "test.sh: $lib is not linked with libasan (a GCC -Db_sanitize=address build?)" >&2; exit 1 ;;
    esac
    export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="env LD_PRELOAD=$rt ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1"
    echo "== cargo test --tests under ASan (preload: $rt)"
    exec cargo test "${locked[@]}" --workspace --tests
fi

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
