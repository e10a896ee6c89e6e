#!/usr/bin/env bash
# Builds the libFuzzer targets in tests/fuzz/ and runs them (tests/fuzz/README.md):
#
#   tests/fuzz/run.sh [SECONDS]            replay every input kept in regressions/<target>/
#                                          and corpus/<target>/, then fuzz each target for
#                                          SECONDS (default 60; 0: replay only)
#   tests/fuzz/run.sh repro TARGET FILE    run one input (FUZZ_TRACE=1 prints the ops)
#   FUZZ_BUILD=DIR                         build directory (default build-test/fuzz)
#   FUZZ_TARGETS="fuzz_api fuzz_peer"      a subset
#
# Needs clang and libFuzzer (Debian: clang, libclang-rt-14-dev). The library is built by
# Meson with clang, ASan+UBSan (the shared runtime, -shared-libsan, because
# lib/meson.build links with --no-undefined) and -fsanitize=fuzzer-no-link so libFuzzer
# sees its coverage; each target links -fsanitize=fuzzer,address,undefined against it.
# Per target one line "ok|FAIL <target> suite: N passed, N failed" (each replayed file is
# one test, the timed fuzzing run one more); exit status 1 if any input crashed or broke an
# oracle. New crashes are saved as $FUZZ_BUILD/crash-<target>-*: keep them in
# tests/fuzz/regressions/<target>/ once fixed. New coverage goes to $FUZZ_BUILD/corpus/,
# never into the committed seed corpus.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/../.." && pwd)
build=${FUZZ_BUILD:-${BUILD_ROOT:-$src/build-test}/fuzz}
targets=(${FUZZ_TARGETS:-fuzz_api fuzz_peer fuzz_tls})

# ---- build ------------------------------------------------------------------------------
rtdir=$(dirname "$(clang -print-file-name=libclang_rt.asan-x86_64.so)")
if [ ! -f "$rtdir/libclang_rt.asan-x86_64.so" ] || [ ! -f "$rtdir/libclang_rt.fuzzer-x86_64.a" ]; then
    echo "run.sh: clang's ASan runtime or libFuzzer not found (apt-get install clang libclang-rt-14-dev)" >&2
    exit 1
fi
export LD_LIBRARY_PATH=$rtdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
san='-fsanitize=address,undefined -fno-sanitize-recover=undefined -shared-libsan'
mkdir -p "$build" && build=$(cd "$build" && pwd)  # absolute: it goes into rpaths
if [ ! -f "$build/lib/build.ninja" ]; then
    rm -rf "$build/lib"
    if ! CC=clang CXX=clang++ meson setup "$build/lib" "$src" -Dtls=enabled -Dtests=false \
        -Dexamples=false -Dlua=disabled -Db_lundef=false -Dbuildtype=debugoptimized \
        -Dc_args="$san -fsanitize=fuzzer-no-link" -Dcpp_args="$san -fsanitize=fuzzer-no-link" \
        -Dc_link_args="$san" -Dcpp_link_args="$san" >"$build/setup.log" 2>&1; then
        cat "$build/setup.log" >&2
        echo "run.sh: meson setup failed" >&2
        exit 1
    fi
fi
ninja -C "$build/lib" >/dev/null || { ninja -C "$build/lib"; exit 1; }
for t in "${targets[@]}"; do
    srcfile=$here/$t.cc
    defs=()
    if [ "$t" = fuzz_tls ]; then srcfile=$here/fuzz_peer.cc; defs=(-DFUZZ_TLS=1); fi
    if [ "$build/$t" -nt "$srcfile" ] && [ "$build/$t" -nt "$build/lib/lib/libaioloop.so" ]; then
        continue
    fi
    clang++ -g -O1 -std=c++17 $san -fsanitize=fuzzer "${defs[@]}" -I"$src/include" "$srcfile" \
        -L"$build/lib/lib" -laioloop -lssl -lcrypto -Wl,-rpath,"$build/lib/lib" \
        -Wl,-rpath,"$rtdir" -o "$build/$t" || exit 1
done

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}:verify_asan_link_order=0
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
# Scripts, not files: let inputs be long (hundreds of ops) from the start.
fuzz_flags=(-max_len=1024 -len_control=0 -timeout=20 -rss_limit_mb=2048)

if [ "${1:-}" = repro ]; then
    exec "$build/$2" "${fuzz_flags[@]}" "$3"
fi
secs=${1:-60}

# ---- replay, then fuzz ------------------------------------------------------------------
status=0
lines=()
for t in "${targets[@]}"; do
    pass=0 fail=0
    echo "== $t: replaying regressions/$t and corpus/$t"
    for f in "$here/regressions/$t"/* "$here/corpus/$t"/*; do
        [ -f "$f" ] || continue
        if "$build/$t" "${fuzz_flags[@]}" "$f" >"$build/$t.replay.log" 2>&1; then
            pass=$((pass + 1))
        else
            fail=$((fail + 1))
            echo "FAIL $t ${f#"$src"/}"
            tail -n 40 "$build/$t.replay.log"
        fi
    done
    if [ "$secs" -gt 0 ]; then
        echo "== $t: fuzzing for $secs s"
        work=$build/corpus/$t
        mkdir -p "$work"
        cp -n "$here/corpus/$t"/* "$work"/ 2>/dev/null
        if "$build/$t" "${fuzz_flags[@]}" -max_total_time="$secs" -print_final_stats=1 \
            -artifact_prefix="$build/crash-$t-" "$work" >"$build/$t.fuzz.log" 2>&1; then
            pass=$((pass + 1))
            grep -E '^(stat::number_of_executed_units|stat::new_units_added|#[0-9]+ +DONE)' \
                "$build/$t.fuzz.log" | sed "s/^/  $t: /"
        else
            fail=$((fail + 1))
            echo "FAIL $t: fuzzing found a crash (artifacts: $build/crash-$t-*)"
            grep -v '^#[0-9]' "$build/$t.fuzz.log" | tail -n 60
        fi
    fi
    if [ $fail -eq 0 ]; then word=ok; else word=FAIL; status=1; fi
    lines+=("$word $t suite: $pass passed, $fail failed")
done
echo
printf '%s\n' "${lines[@]}"
exit $status
