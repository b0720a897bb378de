#!/bin/sh
# Build the libFuzzer harnesses (clang, ASan+UBSan) in build-fuzz and run each
# for a bounded time from its seed corpus.  Usage: tests/fuzz/run.sh [SECONDS]
# (default 30 per harness).  Prints one line per harness (executions, new
# corpus size, crashes) and "fuzz: N passed, N failed"; exits non-zero on any
# crash, leak or timeout, leaving the input in build-fuzz/fuzz-out/crash-*.
set -u
cd "$(dirname "$0")/../.."
secs=${1:-30}
build=build-fuzz
targets="env handshake devfile hostfile"
if [ ! -f $build/build.ninja ]; then
    CC=clang meson setup $build -Dfuzz=enabled -Db_sanitize=address,undefined -Db_lundef=false \
        >/dev/null || exit 1
fi
ninja -C $build $(for t in $targets; do printf 'tests/fuzz/fuzz_%s ' "$t"; done) >/dev/null || exit 1
out=$build/fuzz-out
mkdir -p $out
pass=0 fail=0
for t in $targets; do
    work=$(mktemp -d)
    log=$out/$t.log
    if $build/tests/fuzz/fuzz_$t -max_total_time="$secs" -print_final_stats=1 -timeout=10 \
        -artifact_prefix=$out/crash-$t- "$work" tests/fuzz/corpus/$t >"$log" 2>&1; then
        pass=$((pass + 1))
        status=ok
    else
        fail=$((fail + 1))
        status="FAILED (see $log)"
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "fuzz $t: ${runs:-?} executions in ${secs} s, corpus $(ls "$work" | wc -l) new inputs: $status"
    rm -rf "$work"
done
echo "fuzz: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
