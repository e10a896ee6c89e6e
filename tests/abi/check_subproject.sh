#!/usr/bin/env bash
# Subproject check: a consumer project outside the tree that gets libaioloop with
# dependency('aioloop', fallback: 'aioloop') from subprojects/aioloop (a symlink to this
# source tree), i.e. through meson.override_dependency, and runs a program against it.
#
# usage: check_subproject.sh SOURCE_DIR VERSION
set -u

source_dir=$1
version=$2
meson_cmd=${MESON:-meson}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/aioloop-subproject.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/consumer/subprojects"
ln -s "$source_dir" "$tmp/consumer/subprojects/aioloop"

cat >"$tmp/consumer/meson.build" <<'MEOF'
project('consumer', 'c', default_options: ['c_std=c99', 'warning_level=3', 'werror=true'])
aioloop = dependency('aioloop', fallback: 'aioloop',
                     default_options: ['tests=false', 'examples=false'])
exe = executable('consumer', 'consumer.c', dependencies: aioloop)
test('consumer', exe)
MEOF
cat >"$tmp/consumer/consumer.c" <<'CEOF'
#include <aioloop.h>
#include <stdio.h>

static void on_soon(aiol_loop *loop, void *user_data) {
    (void)loop;
    ++*(int *)user_data;
}

int main(void) {
    aiol_loop *loop = NULL;
    int ran = 0;
    if (aiol_loop_new(&loop) != 0) return 1;
    if (aiol_loop_call_soon(loop, on_soon, &ran, NULL, NULL) != 0) return 1;
    if (aiol_loop_run(loop, AIOL_RUN_DEFAULT) != 0) return 1;
    if (aiol_loop_free(loop) != 0) return 1;
    printf("subproject aioloop %s ran %d\n", aiol_version_string(), ran);
    return ran == 1 ? 0 : 1;
}
CEOF

# Only the consumer's own environment: no sanitizer options of the calling build.
unset ASAN_OPTIONS UBSAN_OPTIONS TSAN_OPTIONS LD_LIBRARY_PATH
if ! (cd "$tmp/consumer" && "$meson_cmd" setup --force-fallback-for=aioloop build >"$tmp/setup.log" 2>&1); then
    cat "$tmp/setup.log"
    echo "FAIL: meson setup of a consumer with subprojects/aioloop"
    exit 1
fi
echo "ok: meson setup of a consumer with subprojects/aioloop"
grep -E "Dependency aioloop|Subproject aioloop" "$tmp/setup.log" | sed 's/^/  /'
if ! ninja -C "$tmp/consumer/build" >"$tmp/build.log" 2>&1; then
    cat "$tmp/build.log"
    echo "FAIL: build the consumer and the subproject"
    exit 1
fi
echo "ok: built the consumer and the subproject"
out=$("$tmp/consumer/build/consumer" 2>&1)
rc=$?
if [ $rc -ne 0 ] || [ "$out" != "subproject aioloop $version ran 1" ]; then
    echo "FAIL: consumer output (exit $rc): $out"
    exit 1
fi
echo "ok: $out"
