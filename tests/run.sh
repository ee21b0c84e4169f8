#!/bin/sh
# tests/run.sh - install what is missing, build everything, run the whole suite twice:
# once as built, once under AddressSanitizer + UBSan. This is the README's test command.
set -eu
cd "$(dirname "$0")/.."
need=""
for p in gcc:gcc ninja:ninja-build flex:flex bison:bison prove:perl; do
    command -v "${p%%:*}" >/dev/null 2>&1 || need="$need ${p#*:}"
done
[ -f /usr/include/jansson.h ] || need="$need libjansson-dev"
if [ -n "$need" ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need
    else
        echo "missing:$need (run as root, or install them)" >&2; exit 1
    fi
fi
ninja all asan
echo "== the suite"
prove -j2 tests/
echo "== the suite under AddressSanitizer + UBSan"
KILN=build/asan/kiln KILN_BUILD=build/asan/tests ASAN_OPTIONS=detect_leaks=0 prove -j2 tests/
