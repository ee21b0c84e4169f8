#!/bin/sh
# run.sh - coverage-guided fuzzing: runs each libFuzzer target of tests/fuzz/ (built into
# build/fuzz/bin/ by `ninja fuzz-targets`; `ninja fuzz` builds them and runs this) on a copy
# of its seed corpus, for FUZZ_SECONDS (default 60) each, or FUZZ_RUNS executions each when
# that is set (then FUZZ_SECONDS, if set too, bounds the time). FUZZ_TARGETS="spec gguf"
# picks targets; FUZZ_JOBS=N runs N workers each. The targets that read a file write it in
# $TMPDIR: /dev/shm when it is writable (a file on disk costs ten times the parse).
# Prints one line per target:
#   fuzz TARGET: EXECS execs, CRASHES crashes (SECONDS s, RATE exec/s)
# and exits 1 if any target crashed, hung (-timeout=10), leaked or ran out of memory.
# Artifacts (the input that failed) go to build/fuzz/artifacts/TARGET-crash-..., the log to
# build/fuzz/logs/TARGET.log, the grown corpus to build/fuzz/work/TARGET/. To keep a crash as
# a regression: copy the artifact to tests/fuzz/regress/TARGET/ (see README, FUZZING).
set -u
secs=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-"spec ir_read safetensors gguf llama2c tokenizer_bin tokenizer_json ktok blob prog_args kiln_args"}
dir=build/fuzz
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
    TMPDIR=/dev/shm
    export TMPDIR
fi
mkdir -p "$dir/artifacts" "$dir/work" "$dir/logs"
failed=0
for t in $targets; do
    bin=$dir/bin/fuzz_$t
    if [ ! -x "$bin" ]; then
        echo "fuzz $t: no $bin (run 'ninja fuzz-targets')" >&2
        failed=1
        continue
    fi
    work=$dir/work/$t
    log=$dir/logs/$t.log
    rm -rf "$work"
    mkdir -p "$work"
    cp tests/fuzz/corpus/$t/* "$work/"
    rm -f "$dir/artifacts/$t-"*
    set -- -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -close_fd_mask=3 \
        "-artifact_prefix=$dir/artifacts/$t-"
    [ -f "tests/fuzz/$t.dict" ] && set -- "$@" "-dict=tests/fuzz/$t.dict"
    if [ -n "${FUZZ_RUNS:-}" ]; then
        set -- "$@" "-runs=$FUZZ_RUNS"
        [ -n "${FUZZ_SECONDS:-}" ] && set -- "$@" "-max_total_time=$secs"
    else
        set -- "$@" "-max_total_time=$secs"
    fi
    if [ -n "${FUZZ_JOBS:-}" ]; then
        set -- "$@" "-jobs=$FUZZ_JOBS" "-workers=$FUZZ_JOBS"
    fi
    start=$(date +%s)
    # leaks are errors; UBSan stops at the first report (the targets are built that way)
    ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        "$bin" "$@" "$work" >"$log" 2>&1
    rc=$?
    end=$(date +%s)
    if [ -n "${FUZZ_JOBS:-}" ]; then       # each worker logs to fuzz-N.log
        cat fuzz-*.log >>"$log" 2>/dev/null
        rm -f fuzz-*.log
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | awk '{s += $1} END {print s + 0}')
    crashes=$(ls "$dir/artifacts/$t-"* 2>/dev/null | wc -l)
    elapsed=$((end - start))
    rate=$((execs / (elapsed > 0 ? elapsed : 1)))
    echo "fuzz $t: $execs execs, $crashes crashes ($elapsed s, $rate exec/s)"
    if [ $rc -ne 0 ] || [ "$crashes" -ne 0 ]; then
        echo "fuzz $t: FAILED (status $rc); see $log and $dir/artifacts/$t-*" >&2
        failed=1
    fi
done
exit $failed
