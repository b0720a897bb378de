#!/bin/sh
# Jobs started by mpirun (Open MPI) and by MPICH's Hydra with no jaccl variable but the
# coordinator: rank and size come from OMPI_COMM_WORLD_* and PMI_*.
# Usage: test_mpirun.sh JACCL_BENCH
set -eu
bench=$1
tmp=$(mktemp -d /tmp/jaccl-mpirun.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
unset JACCL_RANK JACCL_SIZE MLX_RANK JACCL_COORDINATOR MLX_JACCL_COORDINATOR 2>/dev/null || :
ran=0

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

check() {
    grep -q '# jaccl-bench allreduce: nranks 4' "$tmp/out" &&
        grep -q '# Out of bounds values : 0 OK' "$tmp/out" ||
        { echo "FAIL: $1"; cat "$tmp/out"; exit 1; }
    echo "$1: ok"
    ran=$((ran + 1))
}

if command -v mpirun.openmpi >/dev/null; then
    port=$(free_port)
    timeout 120 mpirun.openmpi --allow-run-as-root --oversubscribe -np 4 \
        -x JACCL_COORDINATOR="127.0.0.1:$port" "$bench" allreduce -b 8 -e 64K -f 64 -n 2 -w 1 \
        >"$tmp/out" 2>&1 || { echo "FAIL: mpirun.openmpi"; cat "$tmp/out"; exit 1; }
    check "Open MPI mpirun"
fi
if command -v mpiexec.hydra >/dev/null; then
    port=$(free_port)
    timeout 120 mpiexec.hydra -n 4 -env JACCL_COORDINATOR "127.0.0.1:$port" \
        "$bench" allreduce -b 8 -e 64K -f 64 -n 2 -w 1 \
        >"$tmp/out" 2>&1 || { echo "FAIL: mpiexec.hydra"; cat "$tmp/out"; exit 1; }
    check "MPICH mpiexec (Hydra)"
fi
[ "$ran" -gt 0 ] || { echo "SKIP: neither Open MPI's mpirun nor MPICH's mpiexec.hydra"; exit 77; }
