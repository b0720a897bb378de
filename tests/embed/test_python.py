"""The Python binding at N ranks (run under jaccl-launch -n N): every call's
result against a NumPy reference each rank computes itself, zero-copy and
in-place outputs, buffer-protocol objects, and errors as jaccl.Error."""
import array
import os
import subprocess
import sys
import threading

import numpy as np

import jaccl

FAILS = []


def check(cond, what):
    if not cond:
        FAILS.append(what)
        print(f"rank {jaccl.rank()}: FAIL {what}", file=sys.stderr)


def data(rank, n, dtype, seed=0):
    """Rank `rank`'s input: every rank can compute every other rank's."""
    rng = np.random.default_rng(1000 * seed + rank)
    if np.dtype(dtype).kind in "iu":
        return rng.integers(0, 100, n).astype(dtype)
    if np.dtype(dtype).kind == "b":
        return rng.integers(0, 2, n).astype(bool)
    if np.dtype(dtype).kind == "c":
        return (rng.integers(-8, 8, n) + 1j * rng.integers(-8, 8, n)).astype(dtype)
    return rng.integers(-50, 50, n).astype(dtype)  # small integers: float sums are exact


def reference(inputs, op):
    stack = np.stack(inputs)
    if stack.dtype == bool:
        return {"sum": stack.any(0), "max": stack.any(0),
                "prod": stack.all(0), "min": stack.all(0)}[op]
    red = {"sum": np.sum, "prod": np.prod, "min": np.min, "max": np.max}[op]
    return red(stack, axis=0).astype(stack.dtype)


def test_allreduce_dtypes(r, n):
    types = ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
             "float16", "float32", "float64", "bool", "complex64"]
    for t in types:
        ops = ["sum", "max", "min", "prod"] if t != "complex64" else ["sum", "prod"]
        for op in ops:
            inputs = [data(k, 37, t, seed=1) for k in range(n)]
            if op == "prod" and np.dtype(t).kind in "fc":
                inputs = [np.where(np.abs(a) > 2, 2, a).astype(t) for a in inputs]
            got = jaccl.allreduce(inputs[r], op=op)
            want = reference(inputs, op)
            check(got.dtype == want.dtype and got.shape == want.shape, f"allreduce {t} shape")
            check(np.array_equal(got, want), f"allreduce {t} {op}: {got[:4]} != {want[:4]}")
    x = np.full(10, float(r + 1), dtype=np.float64)
    check(np.allclose(jaccl.allreduce(x, op="avg"), (n + 1) / 2), "allreduce avg")


def test_bfloat16(r, n):
    # bfloat16 lives in uint16: the high half of the float32 bits.
    vals = [data(k, 20, np.float32, seed=2) for k in range(n)]
    bf = [(v.view(np.uint32) >> 16).astype(np.uint16) for v in vals]
    got = jaccl.allreduce(bf[r], dtype="bfloat16")
    check(got.dtype == np.uint16, "bfloat16 result held in uint16")
    as_f32 = (got.astype(np.uint32) << 16).view(np.float32)
    check(np.array_equal(as_f32, np.sum(vals, axis=0)), "bfloat16 sum")


def test_zero_copy(r, n):
    x = np.arange(1000, dtype=np.float32) + r
    addr = x.ctypes.data
    y = jaccl.allreduce(x, out=x)
    check(y is x and x.ctypes.data == addr, "in-place allreduce returns the input buffer")
    check(np.array_equal(x, np.arange(1000, dtype=np.float32) * n + n * (n - 1) / 2),
          "in-place allreduce values")
    out = np.empty(1000, dtype=np.float32)
    check(jaccl.allreduce(np.ones(1000, np.float32), out=out) is out, "out= is returned")
    check(np.all(out == n), "out= values")
    # A slice of a bigger array: the result lands inside it, nothing else moves.
    big = np.zeros(30, dtype=np.int64)
    jaccl.allreduce(np.full(10, r, np.int64), out=big[10:20])
    check(np.all(big[10:20] == n * (n - 1) // 2) and not big[:10].any() and not big[20:].any(),
          "allreduce into a slice")


def test_buffer_protocol(r, n):
    a = array.array("i", [r, 1, 2])
    got = jaccl.allreduce(a, out=a)
    check(got is a and list(a) == [n * (n - 1) // 2, n, 2 * n], f"array.array in place: {a}")
    b = bytearray([r + 1] * 4)
    jaccl.allreduce(b, op="max", out=b)
    check(bytes(b) == bytes([n] * 4), "bytearray max")
    got = jaccl.allreduce(memoryview(bytes([1, 2])))  # read-only input is fine
    check(list(got) == [n, 2 * n], "read-only memoryview input")
    for bad_out in (bytes(2), np.zeros((4, 4), np.uint8)[:, 0]):
        try:
            jaccl.allreduce(bytes([1, 2]), out=bad_out)
            check(False, f"{type(bad_out).__name__} out must be refused")
        except (TypeError, ValueError):
            pass
    ro = bytes([1, 2])
    try:
        jaccl.allreduce(ro, out=ro)  # in place needs a writable buffer too
        check(False, "read-only in-place output must be refused")
    except TypeError:
        pass
    # Every hold ends with the call: in place (one hold for both), out of place,
    # refused (with the exception, and so the call's frame, still referenced).
    c = bytearray([1, 2])
    jaccl.allreduce(c, out=c)
    d = bytearray(2)
    jaccl.allreduce(bytearray([r, 0]), out=d)
    kept = []
    for bad in ({"out": bytearray(3)}, {"op": "nope"}, {"out": d, "op": "nope"}):
        try:
            jaccl.allreduce(c, **bad)
            check(False, f"allreduce with {bad} must be refused")
        except ValueError as e:
            kept.append(e)
    try:
        c.append(0)
        d.append(0)
        check(c[:2] == bytes([n, 2 * n]), f"bytearray in place: {bytes(c)}")
    except BufferError:
        check(False, "a bytearray stays held after the call returned or was refused")


def test_collectives(r, n):
    x = data(r, 6, np.int32, seed=3).reshape(2, 3)
    every = [data(k, 6, np.int32, seed=3).reshape(2, 3) for k in range(n)]
    g = jaccl.allgather(x)
    check(g.shape == (2 * n, 3) and np.array_equal(g, np.concatenate(every)), "allgather")
    # In place: our block already sits in the output.
    out = np.zeros((2 * n, 3), np.int32)
    out[2 * r:2 * r + 2] = x
    jaccl.allgather(out[2 * r:2 * r + 2], out=out)
    check(np.array_equal(out, np.concatenate(every)), "allgather in place")

    big = [data(k, 4 * n, np.float64, seed=4) for k in range(n)]
    rs = jaccl.reduce_scatter(big[r])
    check(np.array_equal(rs, np.sum(big, axis=0)[4 * r:4 * r + 4]), "reduce_scatter")

    root = n - 1
    b = np.full(5, r, np.int64)
    check(jaccl.broadcast(b, root=root) is b and np.all(b == root), "broadcast in place")

    red = jaccl.reduce(np.full(3, r + 1.0), op="max", root=1 % n)
    if r == 1 % n:
        check(red is not None and np.all(red == n), "reduce on the root")
    else:
        check(red is None, "reduce elsewhere returns None")

    src = np.arange(n * 2, dtype=np.int16) + 100 * r
    a2a = jaccl.alltoall(src)
    want = np.concatenate([np.arange(2 * r, 2 * r + 2, dtype=np.int16) + 100 * p
                           for p in range(n)])
    check(np.array_equal(a2a, want), f"alltoall {a2a} != {want}")
    jaccl.barrier()


def test_point_to_point(r, n):
    right, left = (r + 1) % n, (r - 1) % n
    got = np.zeros(100, np.float16)
    with jaccl.group():  # a ring shift: every rank sends and receives at once
        jaccl.send(np.full(100, r, np.float16), right)
        jaccl.recv(got, left)
    check(np.all(got == left), "ring shift with group")
    if r == 0:
        jaccl.send(np.arange(8, dtype=np.uint64), 1)
    elif r == 1:
        got = jaccl.recv(np.zeros(8, np.uint64), 0)
        check(np.array_equal(got, np.arange(8)), "send/recv")
    req = jaccl.iallreduce(np.ones(64, np.float32))
    check(np.all(req.wait() == n), "iallreduce")
    # One request, several threads: the library frees it once, every waiter gets the result.
    req = jaccl.iallreduce(np.ones(1 << 18, np.float32))
    got, errs = [], []

    def waiter():
        try:
            got.append(req.wait())
        except Exception as e:  # noqa: BLE001 (reported below)
            errs.append(e)

    threads = [threading.Thread(target=waiter) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in range(100000):
        if req.test():
            break
    for t in threads:
        t.join(30)
    check(not errs and len(got) == 4 and all(g is got[0] for g in got) and req.test()
          and np.all(got[0] == n), f"iallreduce waited on by 4 threads: {errs}")


def test_split(r, n):
    sub = jaccl.split(r % 2, key=-r)  # reversed order inside each half
    members = list(range(r % 2, n, 2))
    check(sub.size() == len(members), "split size")
    check(sub.rank() == len(members) - 1 - members.index(r), "split rank ordered by key")
    s = sub.allreduce(np.array([r], np.int32))
    check(s[0] == sum(members), "allreduce on the split")
    sub.close()
    check(jaccl.split(None) is None, "no color gives None")


def test_errors(r, n):
    try:
        jaccl.send(np.zeros(1), r)
        check(False, "send to self must raise")
    except jaccl.Error as e:
        check(e.name == "JACCL_ERR_INVALID_ARGUMENT" and e.call == "jaccl_send", str(e))
        check(f"rank {r}" in e.message and "peer" in e.message, f"message names rank: {e}")
    try:
        jaccl.broadcast(np.zeros(4), root=n)
        check(False, "bad root must raise")
    except jaccl.Error as e:
        check(e.result == 1 and "root" in e.message, str(e))
    try:
        jaccl.allreduce(np.zeros(4), op="median")
        check(False, "unknown op must raise")
    except ValueError:
        pass
    if r == 0:  # init from a bad environment: the library's message, named variable
        code = ("import jaccl\ntry:\n    jaccl.init()\nexcept jaccl.Error as e:\n"
                "    print(e.name, '|', e.message)\n")
        env = dict(os.environ, JACCL_RANK="0", JACCL_SIZE="2", JACCL_COORDINATOR="no-port")
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=30).stdout
        check(out.startswith("JACCL_ERR_CONFIG |") and "JACCL_COORDINATOR" in out,
              f"init error: {out!r}")
    # The communicator stays usable after argument errors.
    check(jaccl.allreduce(np.ones(1))[0] == n, "usable after errors")


def test_abort(r, n):
    # A receive nobody answers, aborted from another thread: the GIL is
    # released during the call, so the thread runs and the call returns.
    t = threading.Timer(0.3, jaccl.abort)
    t.start()
    try:
        jaccl.recv(np.zeros(4), (r + 1) % n)
        check(False, "aborted recv must raise")
    except jaccl.Error as e:
        check(e.name == "JACCL_ERR_ABORTED", f"abort: {e}")
    t.join()


def main():
    comm = jaccl.init()
    r, n = comm.rank(), comm.size()
    check(r == int(os.environ["JACCL_RANK"]) and n == int(os.environ["JACCL_SIZE"]), "rank/size")
    check(jaccl.version() == jaccl.__version__ and jaccl.version().count(".") == 2, "version")
    for t in (test_allreduce_dtypes, test_bfloat16, test_zero_copy, test_buffer_protocol,
              test_collectives, test_point_to_point, test_split, test_errors):
        t(r, n)
    test_abort(r, n)  # last: the communicator is unusable afterwards
    jaccl.finalize()
    try:
        jaccl.rank()
        check(False, "calls after finalize must raise")
    except jaccl.Error:
        pass
    print(f"rank {r}: {'FAILED ' + str(len(FAILS)) if FAILS else 'ok'}")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
