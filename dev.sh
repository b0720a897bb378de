#!/usr/bin/env bash
# Developer entry point: installs what is missing (Debian/Ubuntu, as root or
# with sudo), builds, and runs the benchmark or the test suite.
#   ./dev.sh bench [NP] [jaccl-bench args...]   all-reduce benchmark on this machine
#   ./dev.sh test                               whole suite, plain and ASan+UBSan builds
#   ./dev.sh fuzz [SECONDS]                     every fuzzing harness for SECONDS each
#   ./dev.sh build                              build only (into ./build)
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES="gcc g++ meson ninja-build pkg-config libcmocka-dev python3 python3-numpy iproute2 procps
          libjansson-dev libssl-dev libibverbs-dev openssh-server openssh-client openmpi-bin
          clang libclang-rt-14-dev"

install_deps() {
    local missing=""
    for p in $PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    command -v apt-get >/dev/null || { echo "dev.sh: install$missing by hand" >&2; exit 1; }
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "dev.sh: installing$missing"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

# build DIR [meson options...]
build() {
    local dir=$1; shift
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" --werror "$@" >/dev/null
    fi
    ninja -C "$dir" >/dev/null
}

# Count meson's results from its JSON log: prints "passed failed".
count_results() {
    python3 - "$1" <<'PY'
import json, sys
ok = bad = 0
for line in open(sys.argv[1]):
    r = json.loads(line).get("result")
    if r in ("OK", "EXPECTEDFAIL", "SKIP"): ok += 1
    else: bad += 1
print(ok, bad)
PY
}

run_suite() {
    local dir=$1 label=$2
    echo "== $label"
    meson test -C "$dir" --print-errorlogs --num-processes 1 --timeout-multiplier "${3:-1}" || true
    read -r p f < <(count_results "$dir/meson-logs/testlog.json")
    passed=$((passed + p)); failed=$((failed + f))
}

cmd=${1:-test}
case "$cmd" in
build)
    install_deps
    build build
    ;;
bench)
    install_deps
    build build
    np=${2:-4}
    shift $(( $# >= 2 ? 2 : $# ))
    exec build/tools/jaccl-launch -n "$np" -- build/bench/jaccl-bench allreduce "$@"
    ;;
fuzz)   # ./dev.sh fuzz [SECONDS]: every libFuzzer harness for SECONDS each (default 30)
    install_deps
    exec tests/fuzz/run.sh "${2:-30}"
    ;;
test)
    install_deps
    passed=0 failed=0
    build build
    run_suite build "release build"
    build build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debugoptimized
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        run_suite build-asan "ASan+UBSan build" 3
    echo "== fuzzing (${FUZZ_SECONDS:-30} s per harness)"
    # Each line to stderr through its own descriptor: tee /dev/stderr would reopen
    # it, truncating a log file that stderr is redirected to.
    fz=$(tests/fuzz/run.sh "${FUZZ_SECONDS:-30}" |
         while IFS= read -r line; do printf '%s\n' "$line" >&2; printf '%s\n' "$line"; done |
         sed -n 's/^fuzz: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p')
    read -r p f <<<"${fz:-0 1}"; passed=$((passed + p)); failed=$((failed + f))
    echo "$passed passed, $failed failed"
    [ "$failed" = 0 ]
    ;;
*)
    echo "usage: ./dev.sh bench [NP] [jaccl-bench args] | test | fuzz [SECONDS] | build" >&2
    exit 2
    ;;
esac
