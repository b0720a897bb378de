"""Loading libjaccl and declaring the C prototypes (ctypes: no compiler needed)."""
import ctypes
import ctypes.util
import os

_c = ctypes
comm_t = _c.c_void_p
request_t = _c.c_void_p
_buf = _c.c_void_p
_size = _c.c_size_t
_int = _c.c_int


def _candidates():
    env = os.environ.get("JACCL_LIBRARY")
    if env:
        yield env
        return
    here = os.path.dirname(os.path.abspath(__file__))
    dirs = [here, os.path.join(here, "..", "..", "build", "src")]  # a source tree's build
    try:
        from ._installed import LIBDIR  # written by meson install
        dirs.insert(0, LIBDIR)
    except ImportError:
        pass
    for d in dirs:
        for name in ("libjaccl.so", "libjaccl.so.0", "libjaccl.dylib"):
            p = os.path.join(d, name)
            if os.path.exists(p):
                yield p
    found = ctypes.util.find_library("jaccl")
    if found:
        yield found


def load():
    tried = []
    for path in _candidates():
        try:
            return _declare(_c.CDLL(path))
        except OSError as e:
            tried.append(f"{path}: {e}")
    raise ImportError(
        "jaccl: cannot load libjaccl; set JACCL_LIBRARY to the path of libjaccl.so "
        "(tried: " + ("; ".join(tried) or "JACCL_LIBRARY unset, no build/src, not on the "
                      "library path") + ")")


_PROTOS = {
    "jaccl_version": (_c.c_char_p, []),
    "jaccl_result_string": (_c.c_char_p, [_int]),
    "jaccl_last_error": (_c.c_char_p, [comm_t]),
    "jaccl_dtype_size": (_size, [_int]),
    "jaccl_comm_init_env": (_int, [_c.POINTER(comm_t)]),
    "jaccl_comm_split": (_int, [comm_t, _int, _int, _c.POINTER(comm_t)]),
    "jaccl_comm_destroy": (_int, [comm_t]),
    "jaccl_comm_rank": (_int, [comm_t]),
    "jaccl_comm_size": (_int, [comm_t]),
    "jaccl_allreduce": (_int, [_buf, _buf, _size, _int, _int, comm_t]),
    "jaccl_allgather": (_int, [_buf, _buf, _size, _int, comm_t]),
    "jaccl_reduce_scatter": (_int, [_buf, _buf, _size, _int, _int, comm_t]),
    "jaccl_broadcast": (_int, [_buf, _buf, _size, _int, _int, comm_t]),
    "jaccl_reduce": (_int, [_buf, _buf, _size, _int, _int, _int, comm_t]),
    "jaccl_alltoall": (_int, [_buf, _buf, _size, _int, comm_t]),
    "jaccl_barrier": (_int, [comm_t]),
    "jaccl_send": (_int, [_buf, _size, _int, _int, comm_t]),
    "jaccl_recv": (_int, [_buf, _size, _int, _int, comm_t]),
    "jaccl_group_start": (_int, []),
    "jaccl_group_end": (_int, []),
    "jaccl_iallreduce": (_int, [_buf, _buf, _size, _int, _int, comm_t, _c.POINTER(request_t)]),
    "jaccl_iallgather": (_int, [_buf, _buf, _size, _int, comm_t, _c.POINTER(request_t)]),
    "jaccl_ireduce_scatter": (_int, [_buf, _buf, _size, _int, _int, comm_t,
                                     _c.POINTER(request_t)]),
    "jaccl_ibroadcast": (_int, [_buf, _buf, _size, _int, _int, comm_t, _c.POINTER(request_t)]),
    "jaccl_ialltoall": (_int, [_buf, _buf, _size, _int, comm_t, _c.POINTER(request_t)]),
    "jaccl_isend": (_int, [_buf, _size, _int, _int, comm_t, _c.POINTER(request_t)]),
    "jaccl_irecv": (_int, [_buf, _size, _int, _int, comm_t, _c.POINTER(request_t)]),
    "jaccl_test": (_int, [request_t, _c.POINTER(_int)]),
    "jaccl_wait": (_int, [request_t]),
}


# Newer calls: declared when the loaded library has them.
_OPTIONAL = {
    "jaccl_comm_abort": (_int, [comm_t]),
}


def _declare(lib):
    for name, (res, args) in _PROTOS.items():
        f = getattr(lib, name)
        f.restype, f.argtypes = res, args
    for name, (res, args) in _OPTIONAL.items():
        f = getattr(lib, name, None)
        if f is not None:
            f.restype, f.argtypes = res, args
    return lib
