#!/usr/bin/env bash
# Builds and runs the FZ-01 API-sequence fuzzer (tests/fuzz/fuzz_api.cc) outside the
# Meson test suite: it needs clang + libFuzzer (Debian: apt-get install -y clang).
#
#   tests/fuzz/fuzz.sh [SECONDS]          default 60; FUZZ_BUILD=/tmp/aiol-fuzz
#   tests/fuzz/fuzz.sh 0 CRASH_FILE        reproduce one input
#
# The library is built by Meson with clang, ASan+UBSan (dynamic runtime, -shared-libsan,
# because lib/meson.build links with --no-undefined) and -fsanitize=fuzzer-no-link so
# libFuzzer sees its coverage; TLS, tests, examples and Lua are off. Exit status is
# libFuzzer's: 0 when no input crashed or broke an oracle.
set -eu
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${FUZZ_BUILD:-/tmp/aiol-fuzz}
secs=${1:-60}
rtdir=$(dirname "$(clang -print-file-name=libclang_rt.asan-x86_64.so)")
export LD_LIBRARY_PATH=$rtdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
san='-fsanitize=address,undefined -fno-sanitize-recover=undefined -shared-libsan'
if [ ! -f "$build/build.ninja" ]; then
    CC=clang CXX=clang++ meson setup "$build" "$src" -Dtls=disabled -Dtests=false \
        -Dexamples=false -Dlua=disabled -Db_lundef=false -Dbuildtype=debugoptimized \
        -Dc_args="$san -fsanitize=fuzzer-no-link" -Dcpp_args="$san -fsanitize=fuzzer-no-link" \
        -Dc_link_args="$san" -Dcpp_link_args="$san"
fi
ninja -C "$build"
clang++ -g -O1 -std=c++17 $san -fsanitize=fuzzer -I"$src/include" \
    "$src/tests/fuzz/fuzz_api.cc" -L"$build/lib" -laioloop -Wl,-rpath,"$build/lib" -Wl,-rpath,"$rtdir" \
    -o "$build/fuzz_api"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}:verify_asan_link_order=0
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
if [ $# -ge 2 ]; then
    exec "$build/fuzz_api" "$2"
fi
corpus=$build/corpus
mkdir -p "$corpus"
exec "$build/fuzz_api" -max_total_time="$secs" -max_len=2048 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$build/" "$corpus"
