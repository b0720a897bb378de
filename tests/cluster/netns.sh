#!/bin/sh
# Test fixture, sourced by the cluster tests: four "hosts" h0..h3, each a network namespace
# running its own sshd, and a control namespace where the tests run the tools (as from a
# laptop). Every host has a management address on a bridge in the control namespace
# (10.250.0.1X/24: ssh and the coordinator go there) and point-to-point veth "cables":
#   mesh: one cable per pair i<j, 10.1.<10i+j>.<i+1|j+1>/24, interface p<peer> on each side;
#   ring: two cables per neighbour i, i+1 mod 4, 10.<2+c>.<10i+j>.X/24, interfaces r<peer><a|b>.
# Names end with the test's pid, so parallel runs do not collide; nsx_cleanup (an EXIT
# trap) kills the daemons and every process left in the namespaces, and deletes them.
#
# Use: . netns.sh; nsx_test mesh|ring (or nsx_require; nsx_up mesh|ring); then nsx_run CMD...
# runs CMD in the control namespace with JACCL_SSH set, and nsx_host I CMD... runs CMD on host I.
# $NSX_SSH_CONFIG names h0..h3 for ssh; $NSX_DIR is the fixture's temporary directory.

NSX_ID=${NSX_ID:-$$}
NSX_CTL=jx${NSX_ID}c
NSX_DIR=
NSX_N=4

nsx_skip() { echo "SKIP: $*"; exit 77; }

# Namespaces of runs that died without cleaning up (SIGKILL): their pid is gone.
nsx_reap_stale() {
    for ns in $(ip netns list 2>/dev/null | sed -n 's/^\(jx[0-9][0-9]*\)[ch][0-3]*\( .*\)*$/\1/p' | sort -u); do
        pid=${ns#jx}
        [ -d "/proc/$pid" ] && continue
        for n in $(ip netns list | sed -n "s/^\($ns[ch][0-3]*\)\( .*\)*\$/\1/p"); do nsx_del_ns "$n"; done
    done
}

nsx_require() {
    [ "$(id -u)" = 0 ] || nsx_skip "needs root (network namespaces); CI runs as root"
    command -v ip >/dev/null || nsx_skip "needs ip (iproute2)"
    [ -x /usr/sbin/sshd ] || nsx_skip "needs /usr/sbin/sshd (apt-get install openssh-server)"
    command -v ssh >/dev/null || nsx_skip "needs ssh (apt-get install openssh-client)"
    ip netns add "jx${NSX_ID}probe" 2>/dev/null || nsx_skip "cannot create network namespaces here"
    ip netns del "jx${NSX_ID}probe"
    nsx_reap_stale
}

nsx_host_ns() { echo "jx${NSX_ID}h$1"; }

# Kills everything left in a namespace, then deletes it.
nsx_del_ns() {
    pids=$(ip netns pids "$1" 2>/dev/null)
    [ -z "$pids" ] || kill -9 $pids 2>/dev/null
    ip netns del "$1" 2>/dev/null || :
}

nsx_cleanup() {
    set +e
    for i in 0 1 2 3; do nsx_del_ns "$(nsx_host_ns $i)"; done
    nsx_del_ns "$NSX_CTL"
    [ -z "$NSX_DIR" ] || rm -rf "$NSX_DIR"
}

# Processes left in host i's namespace, other than its sshd listener.
nsx_leftovers() {
    ns=$(nsx_host_ns "$1")
    master=$(cat "$NSX_DIR/sshd$1.pid" 2>/dev/null)
    for p in $(ip netns pids "$ns"); do
        [ "$p" = "$master" ] && continue
        # sshd's per-connection processes exit right after the session; not ours to count.
        case $(cat /proc/$p/comm 2>/dev/null) in sshd|"") continue;; esac
        echo "$p $(tr '\0' ' ' </proc/$p/cmdline 2>/dev/null)"
    done
}

# Waits up to $2 tenths of a second until no process of ours is left on any host.
nsx_wait_clean() {
    t=0
    while [ "$t" -lt "$1" ]; do
        left=
        for i in 0 1 2 3; do left="$left$(nsx_leftovers $i)"; done
        [ -z "$left" ] && return 0
        sleep 0.1
        t=$((t + 1))
    done
    for i in 0 1 2 3; do nsx_leftovers $i | sed "s/^/left on h$i: /"; done
    return 1
}

nsx_keys() {
    ssh-keygen -q -t ed25519 -N '' -f "$NSX_DIR/hostkey" -C nsx-host
    ssh-keygen -q -t ed25519 -N '' -f "$NSX_DIR/id" -C nsx-user
    cp "$NSX_DIR/id.pub" "$NSX_DIR/authorized_keys"
    : >"$NSX_DIR/known_hosts"
    : >"$NSX_DIR/ssh_config"
    for i in 0 1 2 3; do
        echo "10.250.0.1$i $(cat "$NSX_DIR/hostkey.pub")" >>"$NSX_DIR/known_hosts"
        printf 'Host h%s\n  HostName 10.250.0.1%s\n' "$i" "$i" >>"$NSX_DIR/ssh_config"
    done
    cat >>"$NSX_DIR/ssh_config" <<EOC
Host *
  User root
  IdentityFile $NSX_DIR/id
  IdentitiesOnly yes
  UserKnownHostsFile $NSX_DIR/known_hosts
  StrictHostKeyChecking yes
  LogLevel ERROR
EOC
    NSX_SSH_CONFIG=$NSX_DIR/ssh_config
    export JACCL_SSH="ssh -F $NSX_SSH_CONFIG"
}

nsx_mgmt() {
    ip netns add "$NSX_CTL"
    ip -n "$NSX_CTL" link set lo up
    ip -n "$NSX_CTL" link add br0 type bridge
    ip -n "$NSX_CTL" addr add 10.250.0.1/24 dev br0
    ip -n "$NSX_CTL" link set br0 up
    for i in 0 1 2 3; do
        ns=$(nsx_host_ns $i)
        ip netns add "$ns"
        ip -n "$ns" link set lo up
        ip -n "$NSX_CTL" link add "m$i" type veth peer name eth0 netns "$ns"
        ip -n "$NSX_CTL" link set "m$i" master br0 up
        ip -n "$ns" addr add "10.250.0.1$i/24" dev eth0
        ip -n "$ns" link set eth0 up
    done
}

# A cable between hosts i and j: interface $3 on i, $4 on j, subnet 10.$5.<10i+j>.0/24.
nsx_cable() {
    a=$(nsx_host_ns "$1") b=$(nsx_host_ns "$2") net="10.$5.$((10 * $1 + $2))"
    ip -n "$a" link add "$3" type veth peer name "$4" netns "$b"
    ip -n "$a" addr add "$net.$(($1 + 1))/24" dev "$3"
    ip -n "$b" addr add "$net.$(($2 + 1))/24" dev "$4"
    ip -n "$a" link set "$3" up
    ip -n "$b" link set "$4" up
}

nsx_links() {
    case $1 in
    mesh)
        for i in 0 1 2 3; do
            for j in 0 1 2 3; do
                if [ "$i" -lt "$j" ]; then nsx_cable "$i" "$j" "p$j" "p$i" 1; fi
            done
        done;;
    ring)
        for i in 0 1 2; do
            j=$((i + 1))
            nsx_cable "$i" "$j" "r${j}a" "r${i}a" 2
            nsx_cable "$i" "$j" "r${j}b" "r${i}b" 3
        done
        nsx_cable 0 3 r3a r0a 2
        nsx_cable 0 3 r3b r0b 3;;
    *) echo "nsx_links: unknown topology $1" >&2; return 1;;
    esac
}

nsx_sshd() {
    mkdir -p /run/sshd "$NSX_DIR/home"
    for i in 0 1 2 3; do
        cat >"$NSX_DIR/sshd$i.conf" <<EOC
ListenAddress 10.250.0.1$i
HostKey $NSX_DIR/hostkey
PidFile $NSX_DIR/sshd$i.pid
AuthorizedKeysFile $NSX_DIR/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AcceptEnv none
EOC
        # A host of its own: root's home is an empty directory there (no login scripts of
        # this machine's root run in the sessions), in a mount namespace of sshd's own.
        ip netns exec "$(nsx_host_ns $i)" unshare -m --propagation private sh -c \
            'mount --bind "$1" /root && exec /usr/sbin/sshd -f "$2" -E "$3"' \
            sh "$NSX_DIR/home" "$NSX_DIR/sshd$i.conf" "$NSX_DIR/sshd$i.log" ||
            { cat "$NSX_DIR/sshd$i.log"; return 1; }
    done
    # sshd writes its pid file once it listens; then one login per host, all at once.
    t=0
    until [ -s "$NSX_DIR/sshd0.pid" ] && [ -s "$NSX_DIR/sshd1.pid" ] &&
        [ -s "$NSX_DIR/sshd2.pid" ] && [ -s "$NSX_DIR/sshd3.pid" ]; do
        t=$((t + 1))
        [ "$t" -lt 100 ] || { echo "sshd did not start:"; cat "$NSX_DIR"/sshd*.log; return 1; }
        sleep 0.1
    done
    for i in 0 1 2 3; do
        nsx_run $JACCL_SSH -o BatchMode=yes -o ConnectTimeout=10 "h$i" true \
            2>"$NSX_DIR/ssh$i.err" &
    done
    for i in 0 1 2 3; do
        wait %1 2>/dev/null || :
    done
    wait
    for i in 0 1 2 3; do
        if [ -s "$NSX_DIR/ssh$i.err" ]; then
            echo "ssh to h$i fails:"; cat "$NSX_DIR/ssh$i.err" "$NSX_DIR/sshd$i.log"; return 1
        fi
    done
}

nsx_up() {
    trap nsx_cleanup EXIT
    trap 'exit 130' INT TERM HUP
    NSX_DIR=$(mktemp -d /tmp/jaccl-nsx.XXXXXX)
    chmod 755 "$NSX_DIR"
    nsx_keys && nsx_mgmt && nsx_links "$1" && nsx_sshd
}

nsx_run() { ip netns exec "$NSX_CTL" "$@"; }
nsx_host() { h=$1; shift; ip netns exec "$(nsx_host_ns "$h")" "$@"; }

# The start of every cluster test: root, the hosts of topology $1 (mesh|ring), the files
# $out and $err that hold a step's output, and step / fail to report progress and failure.
nsx_test() {
    nsx_require
    nsx_up "$1"
    out=$NSX_DIR/out err=$NSX_DIR/err
    t0=$(date +%s)
}
step() { echo "# [$(($(date +%s) - t0)) s] $*"; }
fail() { echo "FAIL: $*"; echo "--- stdout"; cat "$out"; echo "--- stderr"; cat "$err"; exit 1; }
