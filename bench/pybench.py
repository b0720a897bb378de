#!/usr/bin/env python3
"""Time all-reduces called from Python: jaccl's binding (python/jaccl), or
mpi4py's for comparison, on NumPy float32 arrays (sum), in place and out of
place, per call, sizes -b to -e by factors of -f; each size first checks one
call's result (a wrong one ends the run with an error).

    jaccl-launch -n 2 python3 bench/pybench.py                 # jaccl
    mpirun -np 2 python3 bench/pybench.py --mpi4py             # mpi4py, same table

Each size runs batches of calls for about --ms milliseconds in all and prints
the median batch's time per call (us), so a scheduler hiccup in one batch
does not decide it.  Rank 0 prints the table.  What a small call costs here
beyond jaccl-bench's time for the same call is the binding's own work.
"""
import argparse
import statistics
import sys
import time

import numpy as np


def parse_size(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().rstrip("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def sizes(lo, hi, factor):
    s = lo
    while s <= hi:
        yield s
        s *= factor


class Jaccl:
    name = "jaccl"

    def __init__(self):
        import jaccl
        self.j = jaccl
        self.comm = jaccl.init()
        self.rank, self.size = self.comm.rank(), self.comm.size()

    def in_place(self, x, _):
        self.comm.allreduce(x, out=x)

    def out_of_place(self, x, y):
        self.comm.allreduce(x, out=y)

    def barrier(self):
        self.comm.barrier()

    def agree(self, value):
        """The largest value over the ranks (so every rank runs as many calls)."""
        return int(self.comm.allreduce(np.array([value], np.int64), op="max")[0])

    def close(self):
        self.j.finalize()


class Mpi4py:
    name = "mpi4py"

    def __init__(self):
        from mpi4py import MPI
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()

    def in_place(self, x, _):
        self.comm.Allreduce(self.MPI.IN_PLACE, x, op=self.MPI.SUM)

    def out_of_place(self, x, y):
        self.comm.Allreduce(x, y, op=self.MPI.SUM)

    def barrier(self):
        self.comm.Barrier()

    def agree(self, value):
        return self.comm.allreduce(value, op=self.MPI.MAX)

    def close(self):
        pass


def batch(call, x, y, n):
    t = time.perf_counter()
    for _ in range(n):
        call(x, y)
    return (time.perf_counter() - t) / n


def time_call(lib, call, x, y, budget_s):
    """Median time per call of 5 batches, the batch sized from a first estimate."""
    for _ in range(10):
        call(x, y)
    est = lib.agree(int(1e9 * batch(call, x, y, 10)))  # ns, the slowest rank's
    n = max(1, min(100000, int(budget_s / 5 / max(est * 1e-9, 1e-9))))
    lib.barrier()
    return statistics.median(batch(call, x, y, n) for _ in range(5)), n


def check(lib, count):
    """One out-of-place call on known data first: a wrong result fails the run."""
    x = np.full(count, lib.rank + 1, np.float32)
    y = np.zeros(count, np.float32)
    lib.out_of_place(x, y)
    want = lib.size * (lib.size + 1) / 2
    if not np.all(y == want):
        bad = int(np.argmax(y != want))
        sys.exit(f"pybench: rank {lib.rank}: {lib.name} all-reduce of {count} floats: element "
                 f"{bad} is {y[bad]}, want {want}")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-b", "--minbytes", default="8", help="smallest size (default 8)")
    ap.add_argument("-e", "--maxbytes", default="2M", help="largest size (default 2M)")
    ap.add_argument("-f", "--stepfactor", type=int, default=8, help="size factor (default 8)")
    ap.add_argument("--ms", type=float, default=200, help="time per size and mode (default 200)")
    ap.add_argument("--mpi4py", action="store_true", help="time mpi4py instead of jaccl")
    a = ap.parse_args()
    lo, hi = parse_size(a.minbytes), parse_size(a.maxbytes)
    if lo < 4 or hi < lo or a.stepfactor < 2 or a.ms <= 0:
        ap.error("need 4 <= minbytes <= maxbytes, stepfactor >= 2, ms > 0")
    lib = Mpi4py() if a.mpi4py else Jaccl()
    if lib.rank == 0:
        print(f"# {lib.name} all-reduce from Python: {lib.size} ranks, float32 sum, NumPy "
              f"{np.__version__}, Python {sys.version.split()[0]}")
        print(f"# {'size':>10} {'count':>10} {'in-place us':>12} {'out-of-place us':>16} {'calls':>8}")
    for s in sizes(lo, hi, a.stepfactor):
        check(lib, s // 4)
        x = np.ones(s // 4, np.float32)
        y = np.empty_like(x)
        t_in, n = time_call(lib, lib.in_place, x, y, a.ms / 2e3)
        t_out, _ = time_call(lib, lib.out_of_place, x, y, a.ms / 2e3)
        if lib.rank == 0:
            print(f"  {s:>10} {s // 4:>10} {t_in * 1e6:>12.2f} {t_out * 1e6:>16.2f} {n:>8}",
                  flush=True)
    lib.close()


if __name__ == "__main__":
    main()
