#!/usr/bin/env bash
# Tests the Go binding against a built libaioloop. Run from the repository root, after the
# C library is built in ${AIOL_BUILD_DIR:-build} (relative to the root, or absolute):
#
#   bash bindings/go/test.sh
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${AIOL_BUILD_DIR:-build}
case $build in
/*) ;;
*) build=$root/$build ;;
esac
if [[ ! -d $build/meson-uninstalled || ! -d $build/lib ]]; then
    echo "go binding: no built library in $build (set AIOL_BUILD_DIR)" >&2
    exit 1
fi

export PKG_CONFIG_PATH=$build/meson-uninstalled${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
export LD_LIBRARY_PATH=$build/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export CGO_ENABLED=1
export GOFLAGS=${GOFLAGS:--mod=mod}
export GOTOOLCHAIN=${GOTOOLCHAIN:-local} # no dependencies, no downloads
export GOPROXY=${GOPROXY:-off}

cd "$root/bindings/go"
echo "== go vet"
go vet ./...
echo "== go test"
go test -count=1 ./...
echo "== go test -race"
go test -race -count=1 ./...
echo "== go build examples"
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/" ./examples/...
echo "go binding: all passed"
