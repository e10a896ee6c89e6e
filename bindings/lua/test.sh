#!/usr/bin/env bash
# The Lua binding's tests: bash bindings/lua/test.sh (from the repo root, after meson setup
# and ninja of ${AIOL_BUILD_DIR:-build}).
#
#  1. installs lua5.4 / liblua5.4-dev / luajit / libluajit-5.1-dev if missing (as root);
#  2. builds the modules (reconfiguring the build dir if they were not configured);
#  3. runs tests/run.lua under each interpreter with a built module;
#  4. runs examples/echo_server.lua (listen, echo, SIGTERM -> exit 0);
#  5. runs tests/test_gc.lua under valgrind with lua5.4 (skipped if valgrind is missing).
#
# Prints each runner's summary and a final "N passed, N failed"; exit status nonzero on
# any failure.
set -u

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$src" || exit 1
build=${AIOL_BUILD_DIR:-build}
case $build in /*) ;; *) build=$src/$build ;; esac
here=$src/bindings/lua

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok   $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }

# ---- 1. packages --------------------------------------------------------------------
pkgs=(lua5.4 liblua5.4-dev luajit libluajit-5.1-dev)
missing=()
for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "test.sh: installing ${missing[*]}"
    if [ "$(id -u)" -eq 0 ]; then sudo=(); elif command -v sudo >/dev/null; then sudo=(sudo -n); else sudo=(false); fi
    if ! { "${sudo[@]}" apt-get update -qq && \
           DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}"; } >/dev/null; then
        echo "test.sh: could not install ${missing[*]}; testing with what is there" >&2
    fi
fi

# ---- 2. build -----------------------------------------------------------------------
if [ ! -f "$build/build.ninja" ]; then
    echo "test.sh: $build is not a configured Meson build directory" >&2
    exit 1
fi
mod54=$build/bindings/lua/5.4/aioloop.so
modjit=$build/bindings/lua/luajit/aioloop.so
want54=0; wantjit=0
command -v lua5.4 >/dev/null && pkg-config --exists lua5.4 && want54=1
command -v luajit >/dev/null && pkg-config --exists luajit && wantjit=1
ninja -C "$build" >/dev/null || { echo "test.sh: ninja -C $build failed" >&2; exit 1; }
if { [ $want54 = 1 ] && [ ! -f "$mod54" ]; } || { [ $wantjit = 1 ] && [ ! -f "$modjit" ]; }; then
    # configured before the Lua packages were there, or with -Dlua=disabled
    echo "test.sh: reconfiguring $build with -Dlua=auto"
    meson setup --reconfigure "$build" -Dlua=auto >/dev/null &&
        ninja -C "$build" >/dev/null || { echo "test.sh: rebuilding with Lua failed" >&2; exit 1; }
fi

interps=()
[ $want54 = 1 ] && [ -f "$mod54" ] && interps+=("lua5.4:$build/bindings/lua/5.4")
[ $wantjit = 1 ] && [ -f "$modjit" ] && interps+=("luajit:$build/bindings/lua/luajit")
if [ ${#interps[@]} -eq 0 ]; then
    echo "test.sh: no Lua interpreter with a built module" >&2
    echo "0 passed, 1 failed"
    exit 1
fi

tmo=() # a hang must not stall CI
command -v timeout >/dev/null && tmo=(timeout 300)

# ---- 3. the suite under each interpreter ---------------------------------------------
for entry in "${interps[@]}"; do
    lua=${entry%%:*}
    dir=${entry#*:}
    echo "== $lua ($dir/aioloop.so)"
    out=$(LUA_CPATH="$dir/?.so" LUA_PATH="$here/tests/?.lua" "${tmo[@]}" "$lua" "$here/tests/run.lua" 2>/tmp/aiol-lua-stderr.$$)
    rc=$?
    echo "$out"
    summary=$(printf '%s\n' "$out" | tail -n 1)
    if [ $rc -eq 0 ] && [[ $summary =~ ^([0-9]+)\ passed,\ 0\ failed$ ]]; then
        pass "$lua suite: $summary"
    else
        sed 's/^/    stderr: /' /tmp/aiol-lua-stderr.$$ | tail -n 40
        fail "$lua suite (exit $rc): $summary"
    fi
done
rm -f /tmp/aiol-lua-stderr.$$

# ---- 4. the example -------------------------------------------------------------------
example_check() {
    local lua=$1 dir=$2 out pid port rc
    out=$(mktemp)
    LUA_CPATH="$dir/?.so" "$lua" "$here/examples/echo_server.lua" --host 127.0.0.1 --port 0 >"$out" &
    pid=$!
    for _ in $(seq 50); do grep -q "listening on" "$out" && break; sleep 0.1; done
    port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$out" | head -n 1)
    if [ -z "$port" ]; then
        kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
        fail "$lua echo_server.lua: no 'listening on 127.0.0.1:PORT' line ($(cat "$out"))"
        rm -f "$out"; return
    fi
    # a client through the binding: send 256 KiB in pieces, expect it all back
    LUA_CPATH="$dir/?.so" "${tmo[@]}" "$lua" - "$port" <<'LUA'
local aioloop = require "aioloop"
local loop = aioloop.new_loop()
local want = ("0123456789abcdef"):rep(16384)
local got, done = {}, false
loop:connect{host = "127.0.0.1", port = tonumber(arg[1]), protocol = {
    connection_made = function(_, t) for i = 1, #want, 4096 do t:write(want:sub(i, i + 4095)) end end,
    data_received = function(_, t, d)
        got[#got + 1] = d
        if #table.concat(got) >= #want then t:close() end
    end,
    connection_lost = function() done = true end,
}, done = function(t, err) if not t then io.stderr:write(err, "\n") os.exit(1) end end}
loop:call_later(10, function() loop:stop() end)
while not done and loop:run("once") do end
os.exit(table.concat(got) == want and 0 or 1)
LUA
    rc=$?
    kill -TERM $pid
    wait $pid
    local src_rc=$?
    if [ $rc -eq 0 ] && [ $src_rc -eq 0 ]; then
        pass "$lua echo_server.lua: listening on 127.0.0.1:$port, echoed 256 KiB, SIGTERM -> exit 0"
    else
        fail "$lua echo_server.lua: client exit $rc, server exit $src_rc"
    fi
    rm -f "$out"
}
for entry in "${interps[@]}"; do example_check "${entry%%:*}" "${entry#*:}"; done

# ---- 5. valgrind on the garbage-collection tests ---------------------------------------
if ! command -v valgrind >/dev/null; then
    echo "skip valgrind: not installed (apt-get install valgrind to run tests/test_gc.lua under it)"
elif [ ! -f "$mod54" ] || ! command -v lua5.4 >/dev/null; then
    echo "skip valgrind: needs lua5.4 and its module (LuaJIT is not valgrind-clean by default)"
else
    out=$(LUA_CPATH="$build/bindings/lua/5.4/?.so" LUA_PATH="$here/tests/?.lua" "${tmo[@]}" \
          nice valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect,possible \
          lua5.4 "$here/tests/run.lua" "$here/tests/test_gc.lua" 2>&1)
    rc=$?
    if [ $rc -eq 0 ]; then
        pass "valgrind lua5.4 tests/test_gc.lua: $(printf '%s\n' "$out" | tail -n 1), no leaks or errors"
    else
        printf '%s\n' "$out" | tail -n 60 | sed 's/^/    /'
        fail "valgrind lua5.4 tests/test_gc.lua (exit $rc)"
    fi
fi

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
