#!/usr/bin/env bash
# The one command that builds and runs every test:
#
#   scripts/test.sh                 all builds: plain poll notls asan tsan faults
#   scripts/test.sh plain asan      only those
#   BUILD_ROOT=/tmp/b scripts/test.sh
#
# Each build lives in $BUILD_ROOT/<name> (default build-test/) and is reused on the next
# run (setup is skipped when its options did not change), so reruns only rebuild what
# changed. Every build is attempted even if an earlier one fails; then
# scripts/summarize.py prints a table and the final "N passed, N failed" line. Exit status
# is nonzero if any test failed or any build failed to configure or compile.
#
#   plain  default options (epoll)
#   poll   -Dpoller=poll
#   notls  -Dtls=disabled: the library without OpenSSL (TLS calls give AIOL_ENOTSUP)
#   asan   AddressSanitizer + UBSan, leak checking on
#   tsan   ThreadSanitizer, only the 'threads' suite
#   faults -Dfault_injection=true under ASan + UBSan: adds tests/faults (syscalls and
#          allocations failing on demand, leak checking on)
set -u

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$src" || exit 1
build_root=${BUILD_ROOT:-build-test}
meson_cmd=${MESON:-meson}

all_builds=(plain poll notls asan tsan faults)
if [ $# -gt 0 ]; then builds=("$@"); else builds=("${all_builds[@]}"); fi

if ! bash "$src/scripts/deps.sh"; then
    echo "test.sh: scripts/deps.sh failed" >&2
    exit 1
fi

trap 'echo "test.sh: interrupted" >&2; exit 130' INT TERM

# Options, test selection and environment of each build.
build_options() {
    case $1 in
    plain) echo "" ;;
    poll) echo "-Dpoller=poll" ;;
    notls) echo "-Dtls=disabled -Dlua=disabled" ;;
    asan) echo "-Db_sanitize=address,undefined -Db_lundef=false -Dtest_timeout_multiplier=3" ;;
    tsan) echo "-Db_sanitize=thread -Db_lundef=false -Dtest_timeout_multiplier=5" ;;
    faults) echo "-Dfault_injection=true -Db_sanitize=address,undefined -Db_lundef=false -Dtest_timeout_multiplier=3 -Dlua=disabled" ;;
    *) return 1 ;;
    esac
}
test_args() {
    case $1 in
    tsan) echo "--suite threads" ;;
    faults) echo "--suite faults" ;;
    *) echo "" ;;
    esac
}

# ThreadSanitizer maps its shadow memory at fixed addresses; with a large mmap ASLR range
# (vm.mmap_rnd_bits > 28 on newer kernels) it dies with "unexpected memory mapping" unless
# ASLR is off for the process. Probe a tiny threaded program; fall back to running the
# tests under `setarch -R` (the personality is inherited by meson's child processes).
tsan_wrapper=()
tsan_probe() {
    local dir=$1 probe="$1/tsan-probe"
    mkdir -p "$dir"
    printf '%s\n' '#include <pthread.h>' \
        'static int x; static void *f(void *a) { x++; return a; }' \
        'int main(void) { pthread_t t; pthread_create(&t, 0, f, 0); pthread_join(t, 0); return x - 1; }' \
        >"$probe.c"
    if ! ${CC:-cc} -fsanitize=thread -pthread -o "$probe" "$probe.c" 2>"$probe.log"; then
        echo "test.sh: cannot build a ThreadSanitizer program:" >&2
        cat "$probe.log" >&2
        return 1
    fi
    if "$probe" >>"$probe.log" 2>&1; then
        tsan_wrapper=()
        return 0
    fi
    if command -v setarch >/dev/null 2>&1 && setarch "$(uname -m)" -R "$probe" >>"$probe.log" 2>&1; then
        echo "test.sh: ThreadSanitizer needs ASLR off here: running tsan tests under setarch -R"
        tsan_wrapper=(setarch "$(uname -m)" -R)
        return 0
    fi
    echo "test.sh: ThreadSanitizer programs do not run on this machine, even with setarch -R:" >&2
    cat "$probe.log" >&2
    return 1
}

summary_args=()
for name in "${builds[@]}"; do
    dir=$build_root/$name
    if ! opts=$(build_options "$name"); then
        echo "test.sh: unknown build '$name' (known: ${all_builds[*]})" >&2
        summary_args+=(--build "$name" "$dir" unknown-build)
        continue
    fi
    echo
    echo "=============== $name: $dir ${opts:+($opts)}"
    status=ok
    # shellcheck disable=SC2206  # options are single words
    optv=($opts)
    stamp=$dir/.test-sh-options

    # Configure: fresh setup, or reuse (reconfiguring only when the options changed).
    if [ -f "$dir/build.ninja" ] && [ -f "$dir/meson-private/coredata.dat" ]; then
        if [ "$(cat "$stamp" 2>/dev/null)" != "$opts" ]; then
            if ! "$meson_cmd" setup --reconfigure "$dir" "${optv[@]}"; then
                echo "test.sh: $name: reconfigure failed, setting up from scratch"
                rm -rf "$dir"
            fi
        fi
    elif [ -e "$dir" ]; then
        rm -rf "$dir"   # half-configured: start over
    fi
    if [ ! -f "$dir/build.ninja" ]; then
        mkdir -p "$build_root"
        if ! "$meson_cmd" setup "$dir" "${optv[@]}"; then
            status=configure
        fi
    fi
    [ $status = ok ] && printf '%s' "$opts" >"$stamp"
    rm -f "$dir/meson-logs/testlog.json"   # never summarize a stale log

    if [ $status = ok ] && ! ninja -C "$dir"; then
        status=compile
    fi

    wrapper=()
    envv=()
    case $name in
    asan | faults)
        envv=(ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
              UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}")
        ;;
    tsan)
        envv=(TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}")
        if [ $status = ok ] && ! tsan_probe "$dir/meson-private"; then
            status=tsan-unusable
        fi
        wrapper=("${tsan_wrapper[@]}")
        ;;
    esac

    if [ $status = ok ]; then
        # shellcheck disable=SC2046  # test_args are single words
        env "${envv[@]}" "${wrapper[@]}" "$meson_cmd" test -C "$dir" --print-errorlogs \
            $(test_args "$name")
        rc=$?
        if [ $rc -ne 0 ]; then
            status=test-exit=$rc
        fi
    fi
    echo "=============== $name: $status"
    summary_args+=(--build "$name" "$dir" "$status")
done

# The bindings' own runners (cargo test, go test, the Lua runner) against the plain build,
# and a smoke run of the benchmark (a few seconds; it checks every echoed byte, never a
# timing). Each counts as one suite; its own counts go in the table's note.
run_suite() {  # name, command...
    local name=$1 log=$build_root/$1.log
    shift
    echo
    echo "=============== $name: $*"
    "$@" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]} note
    note=$(python3 - "$log" <<'PY'
import re, sys
text = open(sys.argv[1], errors="replace").read()
cargo = re.findall(r"^test result: \w+\. (\d+) passed; (\d+) failed", text, re.M)
lua = re.findall(r"^(?:ok|FAIL)\s+(\S+) suite: (\d+) passed, (\d+) failed", text, re.M)
goo = re.findall(r"^(ok|FAIL)\s+\S+", text, re.M)
if cargo:
    print("cargo: %d passed, %d failed" % (sum(int(p) for p, _ in cargo), sum(int(f) for _, f in cargo)))
elif lua:
    print("; ".join("%s: %s passed, %s failed" % x for x in lua))
elif goo:
    print("go test: %d package runs ok, %d FAIL" % (goo.count("ok"), goo.count("FAIL")))
PY
)
    if [ "$rc" -eq 0 ]; then
        summary_args+=(--suite "$name" ok "$note")
    else
        summary_args+=(--suite "$name" "exit=$rc" "$note")
    fi
}

if [ -z "${AIOL_SKIP_EXTRA:-}" ]; then
    plain=$build_root/plain
    if [ -f "$plain/build.ninja" ]; then
        for lang in rust go lua; do
            run_suite "binding-$lang" env AIOL_BUILD_DIR="$plain" bash "bindings/$lang/test.sh"
        done
        # The Rust tests against the ASan+UBSan library (libasan preloaded for the test
        # binaries only; see bindings/rust/README.md).
        if [ -f "$build_root/asan/build.ninja" ]; then
            run_suite binding-rust-asan env AIOL_RUST_ASAN=1 AIOL_BUILD_DIR="$build_root/asan" \
                bash bindings/rust/test.sh
        fi
        # >>> conformance: cross-language conformance suite (tests/conformance/README.md):
        # every scenario on C, Lua 5.4, LuaJIT, Go and Rust, compared with CPython asyncio.
        run_suite conformance python3 tests/conformance/run.py --build "$plain"
        # <<< conformance
    else
        summary_args+=(--suite bindings "no-plain-build" "")
    fi
    # >>> fuzz: the libFuzzer targets (tests/fuzz/README.md), each replaying its regressions
    # and seed corpus, then fuzzing for 60 s (own clang build in $build_root/fuzz); and
    # valgrind memcheck on a subset of the plain build's tests (about 100 cases).
    run_suite fuzz env BUILD_ROOT="$build_root" bash tests/fuzz/run.sh 60
    if [ -f "$plain/build.ninja" ]; then
        run_suite valgrind bash tests/fuzz/valgrind.sh "$plain"
    fi
    # <<< fuzz
    run_suite bench-smoke python3 bench/run.py --quick --cases 1k,churn,tls-1k --reps 1
fi

echo
python3 "$src/scripts/summarize.py" "${summary_args[@]}"
