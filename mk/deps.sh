#!/bin/sh
# deps.sh - install what building and testing kiln needs, if it is missing (Debian, as root):
# a C compiler, ninja, flex, bison, jansson (JSON for safetensors headers), perl (prove),
# GNU time (peak memory in tests). The sanitizers' runtimes (libasan, libubsan, libtsan: ninja
# asan, ninja tsan) come with build-essential's gcc.
set -eu
need=""
for p in cc:build-essential ninja:ninja-build flex:flex bison:bison prove:perl ar:binutils; do
    command -v "${p%%:*}" >/dev/null 2>&1 || need="$need ${p#*:}"
done
[ -f /usr/include/stdio.h ] || need="$need build-essential"
[ -f /usr/include/jansson.h ] || need="$need libjansson-dev"
[ -x /usr/bin/time ] || need="$need time"    # tests/ctx.t: peak memory of a program
perl -MTest::More -e1 2>/dev/null || need="$need perl"
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "deps.sh: missing:$need; run as root or install them with apt-get" >&2
    exit 1
fi
echo "deps.sh: installing$need"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
