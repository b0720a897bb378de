#!/bin/sh
# Four namespace hosts in a ring, two cables between neighbours: jaccl-config finds the ring
# whatever the order of --hosts, writes both cables per neighbour, refuses a mesh, names an
# unreachable host, prints or runs the setup (a cable interface left down); jaccl-launch
# runs ring collectives from the hostfile it wrote.
# Usage: test_ring.sh JACCL_LAUNCH JACCL_CONFIG JACCL_BENCH CLUSTER_COLLS
set -eu
launch=$1 config=$2 bench=$3 colls=$4
. "$(dirname "$0")/netns.sh"
nsx_test ring
hf=$NSX_DIR/ring.json

step "a cable interface down: printed, not run, without --auto-setup"
ip -n "$(nsx_host_ns 1)" link set r2a down
nsx_run "$config" --hosts h0,h2,h1,h3 --output "$hf" >"$out" 2>"$err" || fail "jaccl-config failed"
grep -q "would run on h1:" "$err" && grep -qx "ip link set dev r2a up" "$err" || fail "no setup line"
ip -n "$(nsx_host_ns 1)" link show r2a | grep -q "state DOWN" || fail "r2a brought up without --auto-setup"

step "the hostfile: ring order, two cables per neighbour"
python3 - "$hf" <<'PY' || fail "wrong hostfile"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["backend"] == "ring", d["backend"]
order = [h["ssh"] for h in d["hosts"]]
assert order in (["h0", "h1", "h2", "h3"], ["h0", "h3", "h2", "h1"]), order
idx = [int(n[1]) for n in order]
for k, h in enumerate(d["hosts"]):
    i = idx[k]
    assert h["ips"] == ["10.250.0.1%d" % i], h
    for m, cell in enumerate(h["tcp"]):
        j = idx[m]
        a, b = min(i, j), max(i, j)
        if (b - a) % 2 == 1:
            assert cell == ["10.%d.%d.%d" % (c, 10 * a + b, i + 1) for c in (2, 3)], (i, j, cell)
        else:
            assert cell is None, (i, j, cell)
PY

step "--auto-setup runs it"
nsx_run "$config" --hosts h0,h1,h2,h3 --output "$hf" --auto-setup >"$out" 2>"$err" ||
    fail "jaccl-config --auto-setup failed"
ip -n "$(nsx_host_ns 1)" link show r2a | grep -q "state UP" || fail "r2a still down"

step "not a mesh: the missing pairs are named"
st=0
nsx_run "$config" --hosts h0,h1,h2,h3 --backend mesh --output "$NSX_DIR/no.json" >"$out" 2>"$err" || st=$?
[ "$st" = 1 ] && [ ! -e "$NSX_DIR/no.json" ] || fail "mesh accepted on a ring (status $st)"
grep -q "no direct link: h0-h2 h1-h3" "$err" || fail "missing pairs not named"

step "an unreachable host is named with ssh's error"
st=0
nsx_run "$config" --hosts h0,h1,nosuchhost,h3 --timeout 10 --output "$NSX_DIR/no.json" >"$out" 2>"$err" ||
    st=$?
[ "$st" = 1 ] || fail "status $st with an unreachable host"
grep -q "\[3/4\] nosuchhost: unreachable: ssh: Could not resolve hostname nosuchhost" "$err" ||
    fail "unreachable host not named with the ssh error"

step "ring collectives from the written hostfile"
nsx_run "$launch" --hostfile "$hf" --timeout 60 -- "$colls" >"$out" 2>"$err" || fail "collectives failed"
[ "$(grep -c '^\[\([0-3]\)\] rank \1 of 4: all collectives ok$' "$out")" = 4 ] ||
    fail "collectives: not every rank ok"
nsx_run "$launch" --hostfile "$hf" --timeout 60 -- "$bench" allreduce -b 8 -e 1M -f 32 -n 2 -w 1 \
    >"$out" 2>"$err" || fail "jaccl-bench allreduce failed"
grep -q '^\[0\] # Out of bounds values : 0 OK' "$out" || fail "jaccl-bench allreduce: not OK"
nsx_wait_clean 50 || fail "processes left"
step "done"
echo ok
