#!/bin/sh
# jaccl-bench under the launcher: every collective at 3 ranks and p2p at 2 and
# 3, over TCP and shm, on small sizes; each run must exit 0 with no wrong
# element, p2p's JSON must hold its fields, and bad usage must exit 2.
set -eu
launch=$1 bench=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

fail() {
    echo "FAIL: $*"
    [ -f "$tmp/out" ] && cat "$tmp/out"
    exit 1
}

# run NP TRANSPORT ARGS...: a checked run; its output is left in $tmp/out.
run() {
    np=$1 tp=$2
    shift 2
    rc=0
    JACCL_TRANSPORT=$tp JACCL_TIMEOUT=20 "$launch" -n "$np" --timeout 60 -- "$bench" "$@" \
        >"$tmp/out" 2>&1 || rc=$?
    [ "$rc" -eq 0 ] || fail "exit $rc: -n $np $tp jaccl-bench $*"
    grep -q "Out of bounds values : 0 OK" "$tmp/out" || fail "wrong values: -n $np $tp $*"
}

# rows: the table rows rank 0 printed.
rows() {
    grep -cE '^\[0\] +[0-9]+ ' "$tmp/out" || true
}

# usage ARGS...: jaccl-bench must refuse ARGS with exit status 2.
usage() {
    rc=0
    "$bench" "$@" >/dev/null 2>&1 || rc=$?
    [ "$rc" -eq 2 ] || fail "jaccl-bench $* exited $rc, expected 2"
}

for tp in tcp shm; do
    for c in allreduce allgather reducescatter broadcast reduce alltoall sendrecv; do
        run 3 "$tp" "$c" -b 24 -e 96K -f 16 -n 3 -w 1
        [ "$(rows)" -eq 4 ] || fail "$c over $tp printed $(rows) rows, expected 4"
    done
    run 2 "$tp" p2p -b 8 -e 1M -f 32 -n 5 -w 1 -J "$tmp/p2p.json"
    [ "$(rows)" -eq 4 ] || fail "p2p over $tp printed $(rows) rows, expected 4"
    python3 - "$tmp/p2p.json" <<'PY' || fail "p2p JSON over $tp"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["collective"] == "p2p" and d["nranks"] == 2 and d["wrong"] == 0, d
assert [r["size"] for r in d["rows"]] == [8, 256, 8192, 262144], d["rows"]
for r in d["rows"]:
    assert r["latency_us"] > 0 and r["bw_gbps"] > 0 and r["bibw_gbps"] > 0, r
    assert r["window"] == 64 and r["wrong"] == 0, r
PY
done

# Rank 2 only joins the agreements; -W sets the window column; 64 MiB
# messages fit twice in the 128 MiB cap.
run 3 tcp p2p -b 4K -e 4K -n 3 -W 4
grep -qE '^\[0\] +4096 +1024 +float +4 ' "$tmp/out" || fail "-W 4 is not the window"
run 2 shm p2p -b 64M -e 64M -n 1 -w 0 -d uint8
grep -qE '^\[0\] +67108864 +67108864 +uint8 +2 ' "$tmp/out" || fail "64 MiB window is not 2"

# -T 1: a million calls of ~10 us do not fit in 1 ms, so far fewer are timed (all
# ranks the same count, or the job would hang); without -T all of -n are.
run 2 tcp allreduce -b 8 -e 64K -f 64 -n 1000000 -w 1 -T 1 -J "$tmp/t.json"
run 2 tcp allgather -b 8 -e 8 -n 7 -w 1 -J "$tmp/n.json"
python3 - "$tmp/t.json" "$tmp/n.json" <<'PY' || fail "-T JSON"
import json, sys
t, n = (json.load(open(f)) for f in sys.argv[1:])
for r in t["rows"]:
    for m in ("out_of_place", "in_place"):
        assert 1 <= r[m]["iters"] < 1000000, r
assert [r["out_of_place"]["iters"] for r in n["rows"]] == [7], n["rows"]
PY

# -a 16: buffers 16 bytes past a page, said in the header and the JSON, results
# still checked (shm copies at that distance go backward: jaccl_copy).
for tp in tcp shm; do
    run 2 "$tp" allgather -b 8K -e 1M -f 128 -n 3 -w 1 -a 16 -J "$tmp/a.json"
    grep -q "# buffers: 16 bytes past a page boundary (-a)" "$tmp/out" || fail "-a 16 not in the header"
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["offset"] == 16, d' \
        "$tmp/a.json" || fail "-a 16 not in the JSON"
done

"$launch" -n 1 --timeout 30 -- "$bench" p2p >"$tmp/out" 2>&1 || fail "p2p at 1 rank"
grep -q "p2p needs at least 2 ranks" "$tmp/out" || fail "p2p at 1 rank says nothing"

usage p2p -W 0
usage p2p -W 1025
usage p2p -b 1K -e 8
usage pingpong
usage allreduce -T -1
usage allreduce -a 4096
usage allreduce -a -1
echo "ok"
