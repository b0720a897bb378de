#!/bin/sh
# jaccl-launch with hostfiles: --dry-run shows where each rank runs and with what; errors name
# the file, the host entry and the field; hosts that are this machine run without ssh.
# Usage: test_hostfile.sh JACCL_LAUNCH EXAMPLES_DIR
set -eu
launch=$1 ex=$2
tmp=$(mktemp -d /tmp/jaccl-hostfile.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
out=$tmp/out err=$tmp/err
unset JACCL_JOB_KEY JACCL_SSH 2>/dev/null || :

fail() { echo "FAIL: $*"; echo "--- stdout"; cat "$out"; echo "--- stderr"; cat "$err"; exit 1; }
has() { grep -qF -- "$1" "$2" || fail "expected '$1' in $2"; }

dry() { "$launch" --dry-run "$@" >"$out" 2>"$err" || fail "dry run failed: $*"; }

echo "# MLX mesh with RDMA: device matrix, mesh, coordinator on the first host's ip"
dry --hostfile "$ex/mesh4-rdma.json" -- prog arg
has '# 4 rank(s), coordinator 10.0.0.11:' "$out"
has 'JACCL_IBV_DEVICES [[null,"mlx5_1","mlx5_2","mlx5_3"],["mlx5_0",null,"mlx5_2","mlx5_3"],' "$out"
has 'rank 3 on node-d via ssh -o BatchMode=yes -o ConnectTimeout=10 node-d:' "$out"
has 'JACCL_RANK=3 JACCL_SIZE=4 JACCL_COORDINATOR=10.0.0.11:' "$out"
has 'JACCL_JOB_KEY=(random) JACCL_ALGO=mesh JACCL_TIMEOUT=60 prog arg' "$out"

echo "# ring of two cables per neighbour; --backend and --env override"
dry --hostfile "$ex/ring4-2cables.json" --ssh "ssh -p 2222" --env JACCL_TIMEOUT=5 -- prog
has '[null,["rxe_a1","rxe_a2"],null,["rxe_a3","rxe_a4"]]' "$out"
has 'rank 1 on node-b via ssh -p 2222 -o BatchMode=yes' "$out"
has 'JACCL_ALGO=ring JACCL_TIMEOUT=5 prog' "$out"
dry --hostfile "$ex/ring4-2cables.json" --backend tcp -- prog
grep -q JACCL_IBV_DEVICES "$out" && fail "tcp backend wrote a device file"
has 'JACCL_TRANSPORT=tcp prog' "$out"

echo "# TCP ring, user@host, slots"
JACCL_JOB_KEY=abc dry --hostfile "$ex/tcp3.json" -- prog
has '# 4 rank(s), coordinator 192.168.7.21:' "$out"
has 'rank 1 on ops@gpu2.example.org via' "$out"
has 'rank 3 on gpu3.example.org' "$out"
has 'JACCL_JOB_KEY=(set) JACCL_ALGO=ring JACCL_TRANSPORT=tcp JACCL_TCP_SOCKETS=2 prog' "$out"

echo "# a plain list; --hosts"
dry --hostfile "$ex/list.json" -- prog
has 'rank 2 on node-c via' "$out"
dry --hosts n1:2,n2 -- prog
has '# 3 rank(s), coordinator n1:' "$out"
has 'rank 1 on n1 via' "$out"
has 'rank 2 on n2 via' "$out"

echo "# errors name the file, the host and the field"
bad() { # name json expected-message
    printf '%s' "$2" >"$tmp/$1.json"
    st=0
    "$launch" --hostfile "$tmp/$1.json" --dry-run -- prog >"$out" 2>"$err" || st=$?
    [ "$st" = 2 ] || fail "$1: status $st, expected 2"
    has "$tmp/$1.json: $3" "$err"
}
bad syntax '{"hosts": [{"ssh": "a",]}' 'line 1 column 24:'
bad nossh '{"hosts": [{"ssh": "a"}, {"ips": []}]}' 'hosts[1]: field "ssh": missing'
bad ips '{"hosts": [{"ssh": "a", "ips": "10.0.0.1"}]}' 'hosts[0] (a): field "ips": expected an array of strings'
bad ipitem '{"hosts": [{"ssh": "a", "ips": ["10.0.0.1", 7]}]}' 'hosts[0] (a): field "ips": item 1 is not a string'
bad rdmacell '{"hosts": [{"ssh": "a", "rdma": [null, 3]}, {"ssh": "b"}]}' 'hosts[0] (a): field "rdma": cell 1 is not null'
bad rdmalen '{"backend": "jaccl", "hosts": [{"ssh": "a", "rdma": [null, "d"]}, {"ssh": "b", "rdma": ["d"]}]}' 'hosts[1] (b): field "rdma": expected one cell per host'
bad rdmadiag '{"hosts": [{"ssh": "a", "rdma": ["x", "d"]}, {"ssh": "b", "rdma": ["d", null]}]}' 'hosts[0] (a): field "rdma": cell 0 (this host) must be null'
bad rdmamissing '{"hosts": [{"ssh": "a", "rdma": [null, "d"]}, {"ssh": "b"}]}' 'hosts[1] (b): field "rdma": missing, while other hosts have one'
bad slots '{"hosts": [{"ssh": "a", "slots": 0}]}' 'hosts[0] (a): field "slots": expected an integer from 1 to 1024'
bad envs '{"envs": ["NOEQUALS"], "hosts": ["a"]}' 'field "envs": item 0 '"'"'NOEQUALS'"'"' is not KEY=VALUE'
bad envkey '{"envs": ["A B=1"], "hosts": ["a"]}' 'field "envs": item 0 '"'"'A B=1'"'"' is not KEY=VALUE'
# ssh would take a destination starting with '-' for an option (-oProxyCommand runs a command)
bad sshopt '{"hosts": [{"ssh": "-oProxyCommand=touch /tmp/x"}]}' 'hosts[0]: field "ssh": '"'"'-oProxyCommand=touch /tmp/x'"'"' is not an ssh destination'
bad sshoptstr '["a", "-oProxyCommand=x"]' 'hosts[1]: '"'"'-oProxyCommand=x'"'"' is not an ssh destination'
st=0
"$launch" --hosts a,-oProxyCommand=x --dry-run -- prog >"$out" 2>"$err" || st=$?
[ "$st" = 2 ] && has "--hosts: hosts[1]: '-oProxyCommand=x' is not an ssh destination" "$err"
st=0
"$launch" -n 1 --env 'A;B=1' -- true >"$out" 2>"$err" || st=$?
[ "$st" = 2 ] && has "invalid --env 'A;B=1'" "$err"
bad nohosts '{"backend": "ring"}' 'field "hosts": missing'
bad empty '{"hosts": []}' 'field "hosts": no hosts'
bad backend '{"backend": "pigeon", "hosts": ["a"]}' 'unknown backend '"'"'pigeon'"'"
st=0
"$launch" --hostfile "$tmp/none.json" --dry-run -- prog >"$out" 2>"$err" || st=$?
[ "$st" = 2 ] && has "$tmp/none.json: unable to open" "$err"

echo "# this machine runs without ssh (JACCL_SSH=false would fail every ssh)"
printf '{"hosts": ["localhost", {"ssh": "127.0.0.1", "slots": 2}]}' >"$tmp/local.json"
JACCL_SSH=false "$launch" --hostfile "$tmp/local.json" --timeout 30 -- sh -c \
    'echo "$JACCL_RANK/$JACCL_SIZE $JACCL_COORDINATOR $JACCL_JOB_KEY"' >"$out" 2>"$err" ||
    fail "local hostfile job failed"
[ "$(grep -c '^\[[0-2]\] [0-2]/3 127.0.0.1:[0-9]* [0-9a-f]\{64\}$' "$out")" = 3 ] || fail "local ranks"
[ "$(sed 's/.* //' "$out" | sort -u | wc -l)" = 1 ] || fail "ranks got different job keys"
JACCL_JOB_KEY=00112233445566778899aabbccddeeff JACCL_SSH=false "$launch" --hosts localhost -- sh -c 'echo "$JACCL_JOB_KEY"' \
    >"$out" 2>"$err" || fail "job with a key"
has "[0] 00112233445566778899aabbccddeeff" "$out"
st=0
JACCL_SSH=false "$launch" --hosts localhost --cwd /nonexistent-dir -- true >"$out" 2>"$err" || st=$?
[ "$st" = 127 ] || fail "status $st for a missing --cwd, expected 127"
has "rank 0: cannot cd to /nonexistent-dir" "$err"
echo ok
