#!/bin/sh
# Run a multi-process test with its ranks in two network namespaces joined by
# a veth pair (ranks 0, 1 in one, 2, 3 in the other; rank 0 listens at
# 10.77.0.1).  The namespaces get names unique to this run and are always
# removed.  Needs root; exits 77 (skipped) without it.
set -u
[ "$(id -u)" = 0 ] && command -v ip >/dev/null || { echo "netns_run: needs root and ip"; exit 77; }
tag="jt$$"
a="${tag}a"
b="${tag}b"
cleanup() {
    ip netns del "$a" 2>/dev/null
    ip netns del "$b" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 143' INT TERM
ip netns add "$a" && ip netns add "$b" &&
    ip link add "v$a" type veth peer name "v$b" &&
    ip link set "v$a" netns "$a" && ip link set "v$b" netns "$b" &&
    ip -n "$a" addr add 10.77.0.1/24 dev "v$a" && ip -n "$b" addr add 10.77.0.2/24 dev "v$b" &&
    ip -n "$a" link set "v$a" up && ip -n "$b" link set "v$b" up &&
    ip -n "$a" link set lo up && ip -n "$b" link set lo up || exit 1
MP_NETNS="$a $a $b $b" MP_COORD_HOST=10.77.0.1 "$@"
exit $?
