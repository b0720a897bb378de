#!/bin/sh
# Four namespace hosts in a full mesh: jaccl-config writes the hostfile, jaccl-launch runs
# every collective over ssh from it (checked by colls.c, and jaccl-bench), writes the RDMA device file on
# each host, stops everything when a remote rank is killed or the launcher interrupted, and
# reports an unreachable host.
# Usage: test_mesh.sh JACCL_LAUNCH JACCL_CONFIG JACCL_BENCH CLUSTER_COLLS
set -eu
launch=$1 config=$2 bench=$3 colls=$4
. "$(dirname "$0")/netns.sh"
nsx_test mesh
hf=$NSX_DIR/mesh.json

# Waits up to 30 s until the 4 ranks of the job started in the background have said "up".
wait_up() {
    t=0
    while [ "$(grep -c up "$out")" -lt 4 ]; do
        t=$((t + 1)); [ "$t" -lt 300 ] || fail "ranks did not start"; sleep 0.1
    done
}

step "jaccl-config on the mesh"
nsx_run "$config" --hosts h0,h1,h2,h3 --env JACCL_TIMEOUT=30 --output "$hf" --dot >"$out" 2>"$err" ||
    fail "jaccl-config failed"
grep -q '"h1" -- "h2" \[label="p2 10.1.12.2 - p1 10.1.12.3"\]' "$out" || fail "no h1-h2 edge in --dot"
python3 - "$hf" <<'PY' || fail "wrong hostfile"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["backend"] == "mesh", d["backend"]
assert d["envs"] == ["JACCL_TIMEOUT=30"], d["envs"]
hosts = d["hosts"]
assert [h["ssh"] for h in hosts] == ["h0", "h1", "h2", "h3"], hosts
for i, h in enumerate(hosts):
    assert h["ips"] == ["10.250.0.1%d" % i], h
    for j, cell in enumerate(h["tcp"]):
        a, b = min(i, j), max(i, j)
        want = None if i == j else "10.1.%d.%d" % (10 * a + b, i + 1)
        assert cell == want, (i, j, cell, want)
PY

step "every collective over ssh, from that hostfile (mesh, then ring)"
for b in mesh ring; do
    nsx_run "$launch" --hostfile "$hf" --backend "$b" --timeout 60 -- "$colls" >"$out" 2>"$err" ||
        fail "collectives ($b) failed"
    [ "$(grep -c '^\[\([0-3]\)\] rank \1 of 4: all collectives ok$' "$out")" = 4 ] ||
        fail "collectives ($b): not every rank ok"
done
nsx_run "$launch" --hostfile "$hf" --timeout 60 -- "$bench" alltoall -b 8 -e 256K -f 64 -n 2 -w 1 \
    >"$out" 2>"$err" || fail "jaccl-bench alltoall failed"
grep -q '^\[0\] # Out of bounds values : 0 OK' "$out" || fail "jaccl-bench alltoall: not OK"

step "rank-prefixed output, environment, job key, device file written remotely"
cat >"$NSX_DIR/rdma.json" <<'JSON'
{"backend": "jaccl", "envs": ["FROM_FILE=1"], "hosts": [
 {"ssh": "h0", "ips": ["10.250.0.10"], "rdma": [null, "rdma_p1", "rdma_p2", "rdma_p3"]},
 {"ssh": "h1", "ips": [], "rdma": ["rdma_p0", null, "rdma_p2", "rdma_p3"]},
 {"ssh": "h2", "ips": [], "rdma": ["rdma_p0", "rdma_p1", null, "rdma_p3"]},
 {"ssh": "h3", "ips": [], "rdma": ["rdma_p0", "rdma_p1", "rdma_p2", null]}]}
JSON
nsx_run "$launch" --hostfile "$NSX_DIR/rdma.json" --env FROM_CLI=2 --cwd /tmp -- sh -c \
    'echo "$JACCL_RANK/$JACCL_SIZE $JACCL_COORDINATOR $FROM_FILE$FROM_CLI $JACCL_ALGO ${#JACCL_JOB_KEY} $(pwd) $(ip -o -4 addr show eth0 | sed "s|.* inet \\([0-9.]*\\)/.*|\\1|")"; cat "$JACCL_IBV_DEVICES"; echo "$JACCL_IBV_DEVICES" >&2' \
    >"$out" 2>"$err" || fail "env job failed"
for r in 0 1 2 3; do
    grep -q "^\[$r\] $r/4 10.250.0.10:[0-9]* 12 mesh 64 /tmp 10.250.0.1$r\$" "$out" || fail "rank $r env"
    grep -q "^\[$r\] \[\[null,\"rdma_p1\",\"rdma_p2\",\"rdma_p3\"\],\[\"rdma_p0\",null," "$out" ||
        fail "rank $r device file"
done
for f in $(sed 's/^\[[0-9]\] //' "$err"); do [ ! -e "$f" ] || fail "device file $f left behind"; done
[ "$(grep -c "^\[[0-3]\] [0-3]/4" "$out")" = 4 ] || fail "not 4 ranks"

step "one remote rank killed: the others are stopped, its status returned"
nsx_run "$launch" --hostfile "$hf" --timeout 60 -- sh -c 'echo up; exec sleep 50' >"$out" 2>"$err" &
lpid=$!
wait_up
victim=
for p in $(ip netns pids "$(nsx_host_ns 2)"); do
    [ "$(cat /proc/$p/comm 2>/dev/null)" = sleep ] && victim=$p
done
[ -n "$victim" ] || fail "no rank found on h2"
kill -KILL "$victim"
st=0; wait "$lpid" || st=$?
[ "$st" = 137 ] || fail "launcher status $st, expected 137 (rank 2 killed by SIGKILL)"
grep -q "rank 2 on h2 exited with status 137" "$err" || fail "rank 2's failure not reported"
nsx_wait_clean 50 || fail "processes left after the kill"

step "SIGINT to the launcher reaches every remote rank"
# (not through nsx_run: $! must be the launcher; sh starts it with SIGINT ignored: restore it)
ip netns exec "$NSX_CTL" env --default-signal=INT "$launch" --hostfile "$hf" --timeout 60 -- sh -c \
    'trap "echo got INT; exit 3" INT; echo up; sleep 50 & wait' >"$out" 2>"$err" &
lpid=$!
wait_up
kill -INT "$lpid"
st=0; wait "$lpid" || st=$?
[ "$st" = 130 ] || fail "launcher status $st after SIGINT, expected 130"
[ "$(grep -c 'got INT' "$out")" = 4 ] || fail "not every rank got SIGINT"
nsx_wait_clean 50 || fail "processes left after SIGINT"

step "the launcher killed (SIGKILL): the remote ranks go with their connections"
ip netns exec "$NSX_CTL" "$launch" --hostfile "$hf" --timeout 60 -- sh -c 'echo up; exec sleep 50' \
    >"$out" 2>"$err" &
lpid=$!
wait_up
kill -KILL "$lpid"
wait "$lpid" || :
nsx_wait_clean 50 || fail "processes left after the launcher was killed"

step "an unreachable host is named; the other ranks are stopped"
printf '{"hosts": [{"ssh": "h0", "ips": ["10.250.0.10"]}, {"ssh": "h1"}, {"ssh": "nosuchhost"}]}' \
    >"$NSX_DIR/bad.json"
st=0
nsx_run "$launch" --hostfile "$NSX_DIR/bad.json" --timeout 60 -- sleep 50 >"$out" 2>"$err" || st=$?
[ "$st" = 255 ] || fail "status $st with an unreachable host, expected 255"
grep -q "rank 2: ssh to nosuchhost failed" "$err" || fail "unreachable host not named"
nsx_wait_clean 50 || fail "processes left after the ssh failure"
step "a --cwd missing on the hosts"
st=0
nsx_run "$launch" --hostfile "$hf" --cwd /nonexistent-dir --timeout 60 -- true >"$out" 2>"$err" || st=$?
[ "$st" = 127 ] || fail "status $st for a missing --cwd, expected 127"
grep -q "^\[[0-3]\] jaccl-launch: .*: cannot cd to /nonexistent-dir$" "$err" || fail "no cd message"
nsx_wait_clean 50 || fail "processes left"

step "done"
echo ok
