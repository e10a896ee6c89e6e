#!/usr/bin/env bash
# Install check: `meson install --destdir`, then use the installed copy the way a user
# would: pkg-config from the DESTDIR, a program written outside the source tree compiled
# with `cc $(pkg-config --cflags --libs aioloop)`, run against the installed .so.
#
# usage: check_install.sh BUILD_DIR SOURCE_DIR VERSION [B_SANITIZE]
set -u

build_dir=$1
source_dir=$2
version=$3
sanitize=${4:-none}
meson_cmd=${MESON:-meson}
cc_cmd=${CC:-cc}

fails=0
ok() { echo "ok: $*"; }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/aioloop-install.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
destdir=$tmp/destdir

if ! "$meson_cmd" install -C "$build_dir" --no-rebuild --quiet --destdir "$destdir" >"$tmp/install.log" 2>&1; then
    cat "$tmp/install.log"
    fail "meson install --destdir"
    exit 1
fi
ok "meson install --no-rebuild --destdir $destdir"

pc=$(find "$destdir" -name aioloop.pc -path '*/pkgconfig/*' | head -n1)
if [ -z "$pc" ]; then
    fail "aioloop.pc installed"
    find "$destdir"
    exit 1
fi
ok "aioloop.pc installed as ${pc#"$destdir"}"
prefix=$(sed -n 's/^prefix=//p' "$pc")
[ -n "$prefix" ] && ok "prefix in aioloop.pc is $prefix" || fail "prefix= line in aioloop.pc"

export PKG_CONFIG_PATH=$(dirname "$pc")
pcflags=(--define-variable=prefix="$destdir$prefix")
mv=$(pkg-config "${pcflags[@]}" --modversion aioloop 2>&1)
[ "$mv" = "$version" ] && ok "pkg-config --modversion aioloop = $mv" ||
    fail "pkg-config --modversion aioloop: got '$mv', want '$version'"
if flags=$(pkg-config "${pcflags[@]}" --cflags --libs aioloop 2>&1); then
    ok "pkg-config --cflags --libs aioloop: $flags"
else
    fail "pkg-config --cflags --libs aioloop: $flags"
    exit 1
fi
libdir=$(pkg-config "${pcflags[@]}" --variable=libdir aioloop)
includedir=$(pkg-config "${pcflags[@]}" --variable=includedir aioloop)
case $libdir in "$destdir"/*) ok "libdir $libdir is inside the DESTDIR" ;;
    *) fail "libdir $libdir is not inside the DESTDIR" ;; esac

# The files a package ships.
cmp -s "$includedir/aioloop.h" "$source_dir/include/aioloop.h" &&
    ok "installed aioloop.h matches include/aioloop.h" || fail "installed $includedir/aioloop.h"
real=$(find "$libdir" -maxdepth 1 -name 'libaioloop.so.*.*.*' -type f | head -n1)
[ -n "$real" ] && ok "real file ${real#"$destdir"}" || fail "libaioloop.so.X.Y.Z installed"
for link in libaioloop.so.0 libaioloop.so; do
    if [ -L "$libdir/$link" ] && [ -e "$libdir/$link" ]; then
        ok "symlink $link -> $(readlink "$libdir/$link")"
    else
        fail "symlink $libdir/$link"
    fi
done

# A user's program, outside the source tree.
cat >"$tmp/user.c" <<'CEOF'
#include <aioloop.h>
#include <stdio.h>

static int fired, destroyed;

static void on_timer(aiol_loop *loop, void *user_data) {
    (void)loop;
    fired += *(int *)user_data;
    printf("timer fired\n");
}
static void on_destroy(void *user_data) {
    (void)user_data;
    destroyed++;
}

int main(void) {
    aiol_loop *loop = NULL;
    int one = 1, rc;
    if ((rc = aiol_loop_new(&loop)) != 0) {
        printf("aiol_loop_new: %s\n", aiol_strerror(rc));
        return 1;
    }
    if ((rc = aiol_loop_call_later(loop, 1000000, on_timer, &one, on_destroy, NULL)) != 0) {
        printf("aiol_loop_call_later: %s\n", aiol_strerror(rc));
        return 1;
    }
    rc = aiol_loop_run(loop, AIOL_RUN_DEFAULT);
    printf("run returned %d\n", rc);
    printf("fired %d destroyed %d\n", fired, destroyed);
    printf("version %s %s\n", aiol_version_string(),
           aiol_version() == AIOL_VERSION_HEX ? "matches" : "MISMATCH");
    printf("free returned %d\n", aiol_loop_free(loop));
    return 0;
}
CEOF

cflags=()
if [ "$sanitize" != none ] && [ -n "$sanitize" ]; then
    cflags=(-fsanitize="$sanitize")   # the library needs its sanitizer runtime loaded first
fi
# shellcheck disable=SC2086  # pkg-config output is meant to be split
if "$cc_cmd" -std=c99 -Wall -Werror "${cflags[@]}" -o "$tmp/user" "$tmp/user.c" $flags >"$tmp/cc.log" 2>&1; then
    ok "compiled a program with cc \$(pkg-config --cflags --libs aioloop)"
else
    cat "$tmp/cc.log"
    fail "compile a program with cc \$(pkg-config --cflags --libs aioloop)"
    exit 1
fi

resolved=$(LD_LIBRARY_PATH=$libdir ldd "$tmp/user" | awk '/libaioloop/ {print $3}')
[ "$resolved" = "$libdir/libaioloop.so.0" ] && ok "the program loads ${resolved#"$destdir"} from the DESTDIR" ||
    fail "the program loads libaioloop from '$resolved', want $libdir/libaioloop.so.0"

out=$(LD_LIBRARY_PATH=$libdir "$tmp/user" 2>&1)
rc=$?
want="timer fired
run returned 0
fired 1 destroyed 1
version $version matches
free returned 0"
if [ $rc -eq 0 ] && [ "$out" = "$want" ]; then
    ok "the installed library ran a call_later timer and reported version $version"
else
    fail "the program's output (exit $rc):"
    echo "--- got"; echo "$out"; echo "--- want"; echo "$want"
fi

if [ $fails -ne 0 ]; then
    echo "$fails install check(s) failed"
    exit 1
fi
echo "all install checks passed"
