#!/bin/sh
# Run a multi-process test executable with every rank on the RDMA transport,
# through the verbs emulator.
#   run_suite.sh EMU_LIB TOPOLOGY CABLES EXE [ARGS...]
# TOPOLOGY: mesh (every pair cabled) or ring (neighbours only; jobs of 2 or 3
# ranks are then a mesh).  CABLES: cables per cabled pair (device names are
# shared by both ends, so cable k of pair i<j is device "emu<pair*CABLES+k>").
# Device files for jobs of 2 to 4 ranks are written to a temporary directory;
# the harness picks the one for its job size via MP_EXTRA_ENV and @SIZE@.
# On a real device: EMU_LIB "-" uses the system's libibverbs, and
# RDMA_DEVICE=NAME puts that device in every cell (e.g. one soft-RoCE rxe0
# that all ranks of this host share).
set -eu
# Long mode only (JACCL_TEST_LONG=1): the whole suites take minutes here.
if [ -n "${VERBS_LONG_ONLY:-}" ] && [ -z "${JACCL_TEST_LONG:-}" ]; then
    echo "skipped: set JACCL_TEST_LONG=1 to run $4 over the verbs emulator"
    exit 77
fi
lib=$1 topo=$2 cables=$3
shift 3
dir=$(mktemp -d "${TMPDIR:-/tmp}/jaccl-verbs.XXXXXX")
fabric=/jaccl-verbs-emu-$$
cleanup() { rm -rf "$dir"; rm -f "/dev/shm$fabric"; }
trap cleanup EXIT INT TERM

cell() { # cell I J N: the JSON of cell [I][J] of an N-rank file
    i=$1 j=$2 n=$3
    [ "$i" -eq "$j" ] && { printf null; return; }
    lo=$((i < j ? i : j)) hi=$((i < j ? j : i))
    if [ "$topo" = ring ] && [ "$n" -gt 3 ] && [ $((hi - lo)) -ne 1 ] && [ $((hi - lo)) -ne $((n - 1)) ]; then
        printf null
        return
    fi
    pair=$((lo * n + hi)) k=0 sep=
    [ "$cables" -gt 1 ] && printf '['
    while [ $k -lt "$cables" ]; do
        if [ -n "${RDMA_DEVICE:-}" ]; then
            printf '%s"%s"' "$sep" "$RDMA_DEVICE"
        else
            printf '%s"emu%d"' "$sep" $((pair * cables + k))
        fi
        sep=', ' k=$((k + 1))
    done
    [ "$cables" -gt 1 ] && printf ']'
    return 0
}

for n in 2 3 4; do
    {
        printf '['
        i=0
        while [ $i -lt $n ]; do
            [ $i -gt 0 ] && printf ',\n '
            printf '['
            j=0
            while [ $j -lt $n ]; do
                [ $j -gt 0 ] && printf ', '
                cell $i $j $n
                j=$((j + 1))
            done
            printf ']'
            i=$((i + 1))
        done
        printf ']\n'
    } >"$dir/devices-$n.json"
done

devs= k=0
while [ $k -lt $((16 * cables)) ]; do devs="$devs${devs:+,}emu$k"; k=$((k + 1)); done
export VERBS_EMU_FABRIC=$fabric VERBS_EMU_DEVICES=$devs
# A mesh forces the RDMA transport; a ring needs auto (the others are reached over shm or TCP).
forced=JACCL_TRANSPORT=rdma
[ "$topo" = ring ] && forced=
libvar=
[ "$lib" != - ] && libvar="JACCL_IBVERBS_LIB=$lib"
export MP_EXTRA_ENV="$forced $libvar JACCL_IBV_DEVICES=$dir/devices-@SIZE@.json ${MP_EXTRA_ENV:-}"
"$@"
