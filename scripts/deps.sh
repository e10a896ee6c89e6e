#!/usr/bin/env bash
# Installs what building and testing libaioloop needs on Debian 12 (bookworm).
# Fast path: nothing is touched when every package is already installed.
#   usage: scripts/deps.sh            (as root, or a user with sudo)
#   AIOL_DEPS_OPTIONAL=1 also installs valgrind (optional, not needed by scripts/test.sh).
set -euo pipefail

packages=(meson ninja-build pkg-config gcc g++ libcmocka-dev libffi-dev libssl-dev openssl python3
          liblua5.4-dev lua5.4 libluajit-5.1-dev luajit   # the Lua binding
          libuv1-dev                                      # bench/: the libuv reference server
          util-linux)                                     # taskset, setarch
# >>> fuzz: libFuzzer targets (tests/fuzz/run.sh) and valgrind memcheck (tests/fuzz/valgrind.sh)
packages+=(clang libclang-rt-14-dev valgrind)
# <<< fuzz
if [ "${AIOL_DEPS_OPTIONAL:-0}" = 1 ]; then
    packages+=(valgrind)
fi

missing=()
for p in "${packages[@]}"; do
    # "install ok installed" is the only state in which the package is usable.
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    if [ "$status" != "install ok installed" ]; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "deps.sh: all ${#packages[@]} packages already installed"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "deps.sh: missing ${missing[*]}, and apt-get is not available (not Debian?)" >&2
    exit 1
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        echo "deps.sh: missing ${missing[*]}; run as root or install sudo" >&2
        exit 1
    fi
fi

echo "deps.sh: installing ${missing[*]}"
"${sudo[@]}" apt-get update
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"
