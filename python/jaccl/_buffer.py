"""Zero-copy access to any object with the buffer protocol (NumPy arrays,
bytearray, array.array, memoryview, ...): the library reads and writes the
object's own memory, held (unresizable, alive) until released."""
import ctypes
import sys

_c = ctypes


class _PyBuffer(_c.Structure):
    # Py_buffer, stable since Python 3.3.
    _fields_ = [("buf", _c.c_void_p), ("obj", _c.py_object), ("len", _c.c_ssize_t),
                ("itemsize", _c.c_ssize_t), ("readonly", _c.c_int), ("ndim", _c.c_int),
                ("format", _c.c_char_p), ("shape", _c.POINTER(_c.c_ssize_t)),
                ("strides", _c.POINTER(_c.c_ssize_t)),
                ("suboffsets", _c.POINTER(_c.c_ssize_t)), ("internal", _c.c_void_p)]


_PyBUF_SIMPLE = 0
_get = _c.pythonapi.PyObject_GetBuffer
_get.restype, _get.argtypes = _c.c_int, [_c.py_object, _c.POINTER(_PyBuffer), _c.c_int]
_release = _c.pythonapi.PyBuffer_Release
_release.restype, _release.argtypes = None, [_c.POINTER(_PyBuffer)]


class _ReadOnlyHold:
    """A read-only buffer's address: ctypes maps only writable memory, so this
    one goes through CPython's PyObject_GetBuffer (a few microseconds more),
    on the memoryview whose layout was checked (an exporter may hand out
    different memory to each request); the Py_buffer keeps that view alive."""

    def __init__(self, view):
        self._view = None
        pb = _PyBuffer()
        _get(view, _c.byref(pb), _PyBUF_SIMPLE)
        if pb.len != view.nbytes:  # a memoryview's own export: cannot differ
            _release(_c.byref(pb))
            raise TypeError(f"jaccl: a read-only buffer of {view.nbytes} bytes exported "
                            f"{pb.len}")
        self._view = pb
        self.address = pb.buf or 0

    def release(self):
        if self._view is not None:
            _release(_c.byref(self._view))
            self._view = None

    def __del__(self):
        if sys is not None and not sys.is_finalizing():
            self.release()


def _refused(obj, writable, why):
    return TypeError(f"jaccl needs {'a writable' if writable else 'a'} C-contiguous buffer, "
                     f"got {type(obj).__name__}: {why}")


class Buffer:
    """A held view of obj's memory: address, bytes, shape, element format,
    whether read-only.  Release it (or use it as a context manager) once the
    library is done.

    memoryview reads the layout and ctypes.from_buffer holds the memory and
    gives its address, both in C: calling PyObject_GetBuffer through ctypes
    for every buffer, and reading its shape field by field, cost most of a
    small call (2 ranks over shared memory, an 8 B all-reduce in place: 16.9
    us from Python before, 6.2 now, against 0.4 us in C)."""

    __slots__ = ("obj", "address", "nbytes", "itemsize", "format", "shape", "readonly", "_hold")

    def __init__(self, obj, writable):
        self._hold = None
        try:
            view = memoryview(obj)
        except TypeError as e:
            raise _refused(obj, writable, e) from None
        why = ("it is not C-contiguous" if not view.c_contiguous else
               "it is read-only" if writable and view.readonly else None)
        if why:
            view.release()
            raise _refused(obj, writable, why)
        self.obj = obj
        self.nbytes, self.itemsize = view.nbytes, view.itemsize
        self.format, self.shape, self.readonly = view.format, view.shape, view.readonly
        if self.nbytes and self.readonly:
            self._hold = _ReadOnlyHold(view)  # holds view, which holds obj
            self.address = self._hold.address
            return
        if self.nbytes:
            self._hold = _c.c_char.from_buffer(view)  # its own view of view's memory
            self.address = _c.addressof(self._hold)
        else:
            self.address = 0
        view.release()

    def release(self):
        hold = self._hold
        if hold is not None:
            self._hold = None  # a writable hold ends with its ctypes object
            if hold.__class__ is _ReadOnlyHold:
                hold.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
