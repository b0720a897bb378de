"""jaccl for Python: collectives across processes on NumPy arrays and any
object with the buffer protocol, zero-copy (the C library reads and writes the
objects' own memory).

    import numpy as np, jaccl
    jaccl.init()                        # from JACCL_RANK, JACCL_SIZE, JACCL_COORDINATOR
    x = np.arange(4, dtype=np.float32) + jaccl.rank()
    jaccl.allreduce(x, out=x)           # in place
    y = jaccl.allgather(x)              # new array, size() * len(x) elements

Run with `jaccl-launch -n 4 python3 script.py`.  Module-level functions use the
communicator made by init(); jaccl.split() and Communicator methods give the
same calls on sub-communicators.  Results go into `out` when given (it may be
the input: in place), else into a new NumPy array (a bytearray without NumPy).
bfloat16 data lives in uint16 (or any 2-byte) buffers: pass dtype="bfloat16".
Library failures raise jaccl.Error with the result name and the library's
message; bad Python arguments raise TypeError or ValueError.
"""
import contextlib
import ctypes
import threading

from . import _lib
from ._buffer import Buffer

_L = _lib.load()

__all__ = ["Error", "Communicator", "Request", "init", "finalize", "close", "is_initialized",
           "world", "abort", "rank", "size", "allreduce", "allgather", "reduce_scatter", "broadcast",
           "reduce", "alltoall", "barrier", "send", "recv", "iallreduce", "iallgather",
           "ireduce_scatter", "ibroadcast", "ialltoall", "isend", "irecv", "split", "group",
           "group_start", "group_end", "version", "DTYPES", "OPS"]

# Order of include/jaccl.h's JACCL_RESULT_LIST.
RESULT_NAMES = ("JACCL_SUCCESS", "JACCL_ERR_INVALID_ARGUMENT", "JACCL_ERR_INVALID_USAGE",
                "JACCL_ERR_CONFIG", "JACCL_ERR_SYSTEM", "JACCL_ERR_REMOTE", "JACCL_ERR_TIMEOUT",
                "JACCL_ERR_UNSUPPORTED", "JACCL_ERR_NOMEM", "JACCL_ERR_INTERNAL",
                "JACCL_ERR_ABORTED")
_INVALID_USAGE = 2

# name -> (jaccl_dtype_t, NumPy dtype holding it)
DTYPES = {"int8": (0, "int8"), "uint8": (1, "uint8"), "int32": (2, "int32"),
          "uint32": (3, "uint32"), "int64": (4, "int64"), "uint64": (5, "uint64"),
          "float16": (6, "float16"), "bfloat16": (7, "uint16"), "float32": (8, "float32"),
          "float64": (9, "float64"), "bool": (10, "bool"), "int16": (11, "int16"),
          "uint16": (12, "uint16"), "complex64": (13, "complex64")}
# jaccl_dtype_t -> bytes per element (jaccl_dtype_size), asked once.
_SIZES = {code: _L.jaccl_dtype_size(code) for code, _ in DTYPES.values()}
OPS = {"sum": 0, "prod": 1, "min": 2, "max": 3, "avg": 4, "mean": 4}

# Buffer-protocol format characters (native byte order) -> dtype names.
_SIGNED, _UNSIGNED = {1: "int8", 2: "int16", 4: "int32", 8: "int64"}, \
    {1: "uint8", 2: "uint16", 4: "uint32", 8: "uint64"}
_FLOATS = {"e": "float16", "f": "float32", "d": "float64", "?": "bool", "Zf": "complex64"}


class Error(Exception):
    """A jaccl call failed.  result: the jaccl_result_t code; name: its enum name
    (e.g. "JACCL_ERR_TIMEOUT"); reason: jaccl_result_string; message: the
    library's detail (jaccl_last_error); call: the C function."""

    def __init__(self, result, call, message):
        self.result = result
        self.name = RESULT_NAMES[result] if 0 <= result < len(RESULT_NAMES) else str(result)
        self.reason = _L.jaccl_result_string(result).decode()
        self.message = message
        self.call = call
        super().__init__(f"{call}: {self.name} ({self.reason}): {message}")


def version():
    """The library's version string, "MAJOR.MINOR.PATCH"."""
    return _L.jaccl_version().decode()


__version__ = version()


def _dtype_name(dtype, buf):
    if dtype is not None:
        name = dtype if isinstance(dtype, str) else getattr(dtype, "name", None)
        if name is None:
            import numpy
            name = numpy.dtype(dtype).name
        if name not in DTYPES:
            raise ValueError(f"jaccl: unknown dtype {dtype!r}; one of {', '.join(DTYPES)}")
        return name
    name = _FORMAT_DTYPE.get((buf.format, buf.itemsize))
    return name if name is not None else _format_dtype(buf.format, buf.itemsize)


# (buffer format, itemsize) -> dtype name, for the formats met so far: every call looks.
_FORMAT_DTYPE = {}


def _format_dtype(format, itemsize):
    fmt = format.lstrip("@=")
    if fmt.startswith("<") and _little_endian():
        fmt = fmt[1:]
    name = None
    if fmt in _FLOATS and (fmt != "?" or itemsize == 1):
        name = _FLOATS[fmt]
    elif fmt in ("b", "h", "i", "l", "q", "n") and itemsize in _SIGNED:
        name = _SIGNED[itemsize]
    elif fmt in ("B", "c", "H", "I", "L", "Q", "N") and itemsize in _UNSIGNED:
        name = _UNSIGNED[itemsize]
    if name is None:
        raise TypeError(f"jaccl: no jaccl dtype for buffer format {format!r} "
                        f"(itemsize {itemsize}); pass dtype=")
    _FORMAT_DTYPE[(format, itemsize)] = name
    return name


def _little_endian():
    import sys
    return sys.byteorder == "little"


class _Src(Buffer):
    """The input of a call: its held buffer, jaccl dtype (code, esize bytes per
    element), element count, and the result's shape."""

    __slots__ = ("dtype", "code", "esize", "count")

    def __init__(self, obj, dtype, writable=False):
        Buffer.__init__(self, obj, writable)
        try:
            self.dtype = _dtype_name(dtype, self)
            self.code = DTYPES[self.dtype][0]
            self.esize = _SIZES[self.code]
            if self.nbytes % self.esize:
                raise ValueError(f"jaccl: {self.nbytes} bytes are not a whole number of "
                                 f"{self.dtype} elements")
        except Exception:
            self.release()
            raise
        self.count = self.nbytes // self.esize
        if self.itemsize != self.esize:  # dtype= reinterprets: a flat result
            self.shape = (self.count,)


# NumPy once looked for (False: not installed); not imported before a result needs it.
_numpy = None


def _empty(shape, dtype):
    global _numpy
    if _numpy is None:
        try:
            import numpy as _numpy
        except ImportError:
            _numpy = False
    if _numpy:
        return _numpy.empty(shape, dtype=DTYPES[dtype][1])
    n = 1
    for s in shape:
        n *= s
    return bytearray(n * _SIZES[DTYPES[dtype][0]])


def _op(op):
    try:
        return OPS[op]
    except (KeyError, TypeError):
        pass
    try:
        return OPS[op.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"jaccl: unknown op {op!r}; one of {', '.join(OPS)}") from None


def _dest(out, shape, src, nbytes):
    """The output buffer: out (checked for size) or a new array of shape.  On
    an error src is released too: the call never starts."""
    try:
        if out is None:
            out = _empty(shape, src.dtype)
        elif out is src.obj and not src.readonly and src.nbytes == nbytes:
            return out, src  # in place: one hold does for both
        buf = Buffer(out, True)
    except BaseException:
        src.release()
        raise
    if buf.nbytes != nbytes:
        buf.release()
        src.release()
        raise ValueError(f"jaccl: out has {buf.nbytes} bytes, the result needs {nbytes}")
    return out, buf


def _blocks(src, size, what):
    if src.count % size:
        raise ValueError(f"jaccl: {what}: {src.count} elements do not split into {size} blocks")
    return src.count // size


# The blocking calls, looked up once.
_CALLS = {n: getattr(_L, "jaccl_" + n) for n in ("allreduce", "allgather", "reduce_scatter",
                                                  "broadcast", "reduce", "alltoall", "send",
                                                  "recv")}

# Buffers used by sends and receives inside a group stay held until group_end.
_tls = threading.local()


def _group_held():
    if not hasattr(_tls, "held"):
        _tls.held, _tls.depth = [], 0
    return _tls.held


class Request:
    """A non-blocking operation in flight.  Its buffers stay held (the objects
    alive and unresizable) until wait() or a test() that returns True.  Safe
    to share between threads: the library frees a request when it completes,
    so one thread at a time asks it; the others see the outcome."""

    def __init__(self, comm, handle, bufs, result):
        self._comm, self._h, self._bufs, self._result = comm, handle, bufs, result
        self._lock = threading.Lock()
        self._error = None  # the failure, raised again to every later wait() or test()

    def _finish(self, rc, call):
        self._h = None
        for b in self._bufs:
            b.release()
        try:
            self._comm._check(rc, call)
        except Error as e:
            self._error = e
            raise
        return self._result

    def _outcome(self):
        if self._error is not None:
            raise self._error
        return self._result

    def wait(self):
        """Block until done; return the result (the output buffer, or None)."""
        with self._lock:
            if self._h is None:
                return self._outcome()
            return self._finish(_L.jaccl_wait(self._h), "jaccl_wait")

    def test(self):
        """True once done (errors raise here); never blocks (False while
        another thread waits on this request)."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            if self._h is None:
                self._outcome()
                return True
            done = ctypes.c_int(0)
            rc = _L.jaccl_test(self._h, ctypes.byref(done))
            if done.value:
                self._finish(rc, "jaccl_test")
                return True
            self._comm._check(rc, "jaccl_test")
            return False
        finally:
            self._lock.release()

    @property
    def result(self):
        return self._result

    def __del__(self):
        # Dropped while in flight: wait, or the library would write into
        # memory Python may already have freed.
        if getattr(self, "_h", None) is not None and _L is not None:
            _L.jaccl_wait(self._h)
            for b in self._bufs:
                b.release()


class Communicator:
    """A jaccl communicator.  close() (or a with block) destroys it."""

    def __init__(self, handle):
        self._h = handle

    @classmethod
    def from_env(cls):
        h = _lib.comm_t()
        rc = _L.jaccl_comm_init_env(ctypes.byref(h))
        if rc:
            raise Error(rc, "jaccl_comm_init_env", (_L.jaccl_last_error(None) or b"").decode())
        return cls(h)

    def _handle(self):
        if self._h is None:
            raise Error(_INVALID_USAGE, "jaccl", "the communicator is closed")
        return self._h

    def _check(self, rc, call):
        if rc:
            raise Error(rc, call, (_L.jaccl_last_error(self._h) or b"").decode())

    def close(self):
        if self._h is not None:
            h, self._h = self._h, None
            _L.jaccl_comm_destroy(h)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def abort(self):
        """Make the call blocked on this communicator (in any thread) raise
        jaccl.Error JACCL_ERR_ABORTED; afterwards only close() may follow.
        Safe from another thread: calls into the library release the GIL."""
        if not hasattr(_L, "jaccl_comm_abort"):
            raise Error(7, "jaccl_comm_abort", "this libjaccl has no jaccl_comm_abort")
        self._check(_L.jaccl_comm_abort(self._handle()), "jaccl_comm_abort")

    def rank(self):
        return _L.jaccl_comm_rank(self._handle())

    def size(self):
        return _L.jaccl_comm_size(self._handle())

    def _run(self, name, args, bufs, result, nonblocking):
        """Call the library on held bufs; they are released before this returns
        or raises, unless a request or a group still uses them."""
        kept = False
        try:
            h = self._handle()
            if nonblocking:
                req = _lib.request_t()
                rc = getattr(_L, "jaccl_i" + name)(*args, h, ctypes.byref(req))
                kept = rc == 0
            else:
                rc = _CALLS[name](*args, h)
                if name in ("send", "recv") and getattr(_tls, "depth", 0):
                    _group_held().extend(bufs)  # released at group_end
                    kept = True
        finally:
            if not kept:
                for b in bufs:
                    b.release()
        if nonblocking and kept:
            return Request(self, req, bufs, result)
        if rc:
            self._check(rc, ("jaccl_i" if nonblocking else "jaccl_") + name)
        return result

    def allreduce(self, x, op="sum", out=None, dtype=None, *, nonblocking=False):
        """Element-wise reduction over all ranks; out=x works in place."""
        op = _op(op)
        s = _Src(x, dtype)
        out, d = _dest(out, s.shape, s, s.nbytes)
        return self._run("allreduce", (s.address, d.address, s.count, s.code, op),
                         [s, d], out, nonblocking)

    def allgather(self, x, out=None, dtype=None, *, nonblocking=False):
        """Every rank's x concatenated in rank order (along the first axis)."""
        n = self.size()
        s = _Src(x, dtype)
        shape = (n * s.shape[0],) + s.shape[1:] if s.shape else (n,)
        out, d = _dest(out, shape, s, n * s.nbytes)
        return self._run("allgather", (s.address, d.address, s.count, s.code),
                         [s, d], out, nonblocking)

    def reduce_scatter(self, x, op="sum", out=None, dtype=None, *, nonblocking=False):
        """Block rank() of the reduction of x (size() equal blocks)."""
        op, n = _op(op), self.size()
        s = _Src(x, dtype)
        try:
            k = _blocks(s, n, "reduce_scatter")
        except ValueError:
            s.release()
            raise
        shape = ((s.shape[0] // n,) + s.shape[1:] if s.shape and s.shape[0] % n == 0
                 else (k,))
        out, d = _dest(out, shape, s, k * s.esize)
        return self._run("reduce_scatter", (s.address, d.address, k, s.code, op),
                         [s, d], out, nonblocking)

    def broadcast(self, x, root=0, out=None, dtype=None, *, nonblocking=False):
        """The root's x into out on every rank; out defaults to x itself."""
        s = _Src(x, dtype)
        if out is None:
            out = x
        out, d = _dest(out, s.shape, s, s.nbytes)
        return self._run("broadcast", (s.address, d.address, s.count, s.code, root),
                         [s, d], out, nonblocking)

    def reduce(self, x, op="sum", root=0, out=None, dtype=None):
        """The reduction on the root (returned there); None on other ranks."""
        op, me = _op(op), self.rank()
        s = _Src(x, dtype)
        bufs, addr = [s], None
        if me == root:
            out, d = _dest(out, s.shape, s, s.nbytes)
            bufs.append(d)
            addr = d.address
        else:
            out = None
        return self._run("reduce", (s.address, addr, s.count, s.code, op, root),
                         bufs, out, False)

    def alltoall(self, x, out=None, dtype=None, *, nonblocking=False):
        """Block p of out = block rank() of rank p's x (size() equal blocks)."""
        n = self.size()
        s = _Src(x, dtype)
        try:
            k = _blocks(s, n, "alltoall")
        except ValueError:
            s.release()
            raise
        out, d = _dest(out, s.shape, s, s.nbytes)
        return self._run("alltoall", (s.address, d.address, k, s.code),
                         [s, d], out, nonblocking)

    def barrier(self):
        self._check(_L.jaccl_barrier(self._handle()), "jaccl_barrier")

    def send(self, x, peer, dtype=None, *, nonblocking=False):
        """Send x to peer (matched by a recv of the same size there)."""
        s = _Src(x, dtype)
        return self._run("send", (s.address, s.count, s.code, peer), [s], None,
                         nonblocking)

    def recv(self, out, peer, dtype=None, *, nonblocking=False):
        """Receive into out (its size says how much) from peer; returns out."""
        s = _Src(out, dtype, writable=True)
        return self._run("recv", (s.address, s.count, s.code, peer), [s], out,
                         nonblocking)

    def split(self, color, key=0):
        """Ranks with the same color form a new Communicator ordered by key then
        rank; color None (or negative) gets None."""
        c = -1 if color is None or color < 0 else color
        h = _lib.comm_t()
        self._check(_L.jaccl_comm_split(self._handle(), c, key, ctypes.byref(h)),
                    "jaccl_comm_split")
        return Communicator(h) if h.value else None

    def iallreduce(self, x, op="sum", out=None, dtype=None):
        return self.allreduce(x, op, out, dtype, nonblocking=True)

    def iallgather(self, x, out=None, dtype=None):
        return self.allgather(x, out, dtype, nonblocking=True)

    def ireduce_scatter(self, x, op="sum", out=None, dtype=None):
        return self.reduce_scatter(x, op, out, dtype, nonblocking=True)

    def ibroadcast(self, x, root=0, out=None, dtype=None):
        return self.broadcast(x, root, out, dtype, nonblocking=True)

    def ialltoall(self, x, out=None, dtype=None):
        return self.alltoall(x, out, dtype, nonblocking=True)

    def isend(self, x, peer, dtype=None):
        return self.send(x, peer, dtype, nonblocking=True)

    def irecv(self, out, peer, dtype=None):
        return self.recv(out, peer, dtype, nonblocking=True)


def group_start():
    """Record sends and receives until group_end(), then run them together."""
    _group_held()
    rc = _L.jaccl_group_start()
    if rc:
        raise Error(rc, "jaccl_group_start", "")
    _tls.depth += 1


def group_end():
    held = _group_held()
    rc = _L.jaccl_group_end()
    _tls.depth = max(0, _tls.depth - 1)
    if _tls.depth == 0:
        for b in held:
            b.release()
        held.clear()
    if rc:
        # The failing call's detail is on its communicator; name the group.
        raise Error(rc, "jaccl_group_end", "a send or receive in the group failed; "
                    "see the error of the call that failed on its communicator")


@contextlib.contextmanager
def group():
    """with jaccl.group(): sends and receives inside run together at the end."""
    group_start()
    try:
        yield
    finally:
        group_end()


_world = None


def init():
    """Join the job described by the environment (collective); returns the
    world Communicator, also used by the module-level functions."""
    global _world
    if _world is None:
        _world = Communicator.from_env()
    return _world


def is_initialized():
    return _world is not None


def world():
    if _world is None:
        raise Error(_INVALID_USAGE, "jaccl", "call jaccl.init() first")
    return _world


def finalize():
    """Destroy the world communicator (init() may be called again)."""
    global _world
    if _world is not None:
        w, _world = _world, None
        w.close()


close = finalize


def _forward(name):
    method = getattr(Communicator, name)

    def f(*args, **kwargs):
        return method(world(), *args, **kwargs)
    f.__name__ = name
    f.__doc__ = getattr(Communicator, name).__doc__
    return f


for _name in ("abort", "rank", "size", "allreduce", "allgather", "reduce_scatter", "broadcast", "reduce",
              "alltoall", "barrier", "send", "recv", "split", "iallreduce", "iallgather",
              "ireduce_scatter", "ibroadcast", "ialltoall", "isend", "irecv"):
    globals()[_name] = _forward(_name)
del _name
