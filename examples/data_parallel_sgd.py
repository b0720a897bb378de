#!/usr/bin/env python3
"""Data-parallel training with jaccl: a small NumPy MLP (tanh hidden layer,
logistic output) learns a generated binary classification task.  Each step's
global batch is split over the ranks; every rank computes the gradient of its
rows, one in-place all-reduce sums the gradients (they live in one flat
buffer), and every rank applies the same update.  At the end every rank trains
the same model alone on the whole global batch and checks that the weights
agree within 1e-5 (exit status 1 otherwise).  Prints samples/s.

    jaccl-launch -n 4 python3 examples/data_parallel_sgd.py --steps 50
"""
import argparse
import os
import sys
import time

# The ranks are the parallelism: keep each one's BLAS to one thread.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import jaccl  # noqa: E402


class MLP:
    """Parameters and gradients each live in one flat float64 buffer; the
    named arrays are views into it, so the all-reduce is one call, no copy."""

    def __init__(self, d_in, hidden, rng):
        self.shapes = {"w1": (d_in, hidden), "b1": (hidden,), "w2": (hidden,), "b2": (1,)}
        n = sum(int(np.prod(s)) for s in self.shapes.values())
        self.theta, self.grad = np.zeros(n), np.zeros(n)
        self.p, self.g = self._views(self.theta), self._views(self.grad)
        self.p["w1"][:] = rng.standard_normal((d_in, hidden)) / np.sqrt(d_in)
        self.p["w2"][:] = rng.standard_normal(hidden) / np.sqrt(hidden)

    def _views(self, flat):
        out, at = {}, 0
        for name, shape in self.shapes.items():
            k = int(np.prod(shape))
            out[name] = flat[at:at + k].reshape(shape)
            at += k
        return out

    def gradient(self, x, y, denom):
        """Gradient of the summed loss over rows x, divided by denom (the
        global batch size), into self.grad; returns the summed loss."""
        p, g = self.p, self.g
        a1 = np.tanh(x @ p["w1"] + p["b1"])
        z2 = a1 @ p["w2"] + p["b2"][0]
        prob = 1.0 / (1.0 + np.exp(-z2))
        loss = float(np.sum(np.logaddexp(0.0, z2) - y * z2))
        dz2 = (prob - y) / denom
        g["w2"][:] = a1.T @ dz2
        g["b2"][0] = dz2.sum()
        dz1 = np.outer(dz2, p["w2"]) * (1.0 - a1 * a1)
        g["w1"][:] = x.T @ dz1
        g["b1"][:] = dz1.sum(axis=0)
        return loss


def make_data(n, d_in, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d_in))
    teacher = rng.standard_normal(d_in)
    y = (np.tanh(x @ teacher) + 0.3 * rng.standard_normal(n) > 0).astype(np.float64)
    return x, y


def train(model, x, y, args, lo, hi, comm):
    """args.steps SGD steps; rows [lo, hi) of each global batch are ours.
    comm None: train alone on the whole batch."""
    batches = len(x) // args.batch
    loss = np.zeros(1)
    for step in range(args.steps):
        at = (step % batches) * args.batch
        loss[0] = model.gradient(x[at + lo:at + hi], y[at + lo:at + hi], args.batch)
        if comm is not None:
            comm.allreduce(model.grad, out=model.grad)  # in place, zero-copy
            comm.allreduce(loss, out=loss)
        model.theta -= args.lr * model.grad
    return loss[0] / args.batch


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch", type=int, default=2048, help="global batch (all ranks)")
    ap.add_argument("--d-in", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--lr", type=float, default=0.5)
    args = ap.parse_args()

    comm = jaccl.init()
    rank, np_ = comm.rank(), comm.size()
    lo, hi = args.batch * rank // np_, args.batch * (rank + 1) // np_
    x, y = make_data(4 * args.batch, args.d_in)

    model = MLP(args.d_in, args.hidden, np.random.default_rng(1))
    comm.barrier()
    t0 = time.perf_counter()
    loss = train(model, x, y, args, lo, hi, comm)
    comm.barrier()
    elapsed = time.perf_counter() - t0

    alone = MLP(args.d_in, args.hidden, np.random.default_rng(1))
    train(alone, x, y, args, 0, args.batch, None)
    diff = float(np.max(np.abs(model.theta - alone.theta)))
    # Every rank must hold the same weights, bit for bit.
    spread = comm.allreduce(model.theta, op="max") - comm.allreduce(model.theta, op="min")
    ok = diff <= 1e-5 and not spread.any()
    if rank == 0 or not ok:
        print(f"rank {rank}: np={np_} global batch {args.batch} steps {args.steps}: "
              f"{args.steps * args.batch / elapsed:.0f} samples/s, final loss {loss:.4f}, "
              f"max |w - w_single| {diff:.1e}: {'ok' if ok else 'MISMATCH'}")
    jaccl.finalize()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
