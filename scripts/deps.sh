#!/usr/bin/env bash
# Installs what building and testing libaioloop needs on Debian 12 (bookworm).
# Fast path: nothing is touched when every package is already installed.
#   usage: scripts/deps.sh            (as root, or a user with sudo)
set -euo pipefail

packages=(meson ninja-build pkg-config gcc g++ libcmocka-dev libffi-dev libssl-dev openssl python3
          liblua5.4-dev lua5.4 libluajit-5.1-dev luajit   # the Lua binding
          libuv1-dev                                      # bench/: the libuv reference server
          util-linux                                      # taskset, setarch
          clang libclang-rt-14-dev valgrind)              # tests/fuzz: libFuzzer, memcheck

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
