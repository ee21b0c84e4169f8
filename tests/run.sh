#!/bin/sh
# tests/run.sh - the README's test command (and CI's): install what is missing, build
# everything, and run the whole suite twice: once as built, once with the compiler, the
# runtime and every program it compiles under AddressSanitizer + UBSan.
set -eu
cd "$(dirname "$0")/.."
sh mk/deps.sh
ninja all asan
echo "== the suite"
prove -j2 tests/
echo "== the suite under AddressSanitizer + UBSan"
KILN=build/asan/kiln KILN_BUILD=build/asan ASAN_OPTIONS=detect_leaks=0 prove -j2 tests/
