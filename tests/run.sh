#!/bin/sh
# tests/run.sh - the README's test command (and CI's): install what is missing, build
# everything, and run the whole suite twice: once as built, once with the compiler, the
# runtime and every program it compiles under AddressSanitizer + UBSan; then the
# multi-threaded tests (threads.t, library.t, the unit tests' pools) under ThreadSanitizer.
# threads.t's determinism matrix is taken over two weight types under TSan, and not under ASan
# (see there): the whole stays within 15 minutes on two cores.
set -eu
cd "$(dirname "$0")/.."
sh mk/deps.sh
ninja all asan tsan
echo "== the suite"
prove -j2 tests/
echo "== the suite under AddressSanitizer + UBSan"
KILN=build/asan/kiln KILN_BUILD=build/asan ASAN_OPTIONS=detect_leaks=0 KILN_THREADS_WTYPES=none \
    prove -j2 tests/
echo "== the multi-threaded tests under ThreadSanitizer"
KILN=build/tsan/kiln KILN_BUILD=build/tsan TSAN_OPTIONS=halt_on_error=1 \
    KILN_THREADS_WTYPES=f32,q4_0 prove -j2 tests/threads.t tests/library.t tests/unit.t
