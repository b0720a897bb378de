"""Zero-copy access to any object with the buffer protocol (NumPy arrays,
bytearray, array.array, memoryview, ...) through CPython's PyObject_GetBuffer:
the library reads and writes the object's own memory."""
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


_PyBUF_WRITABLE = 0x0001
_PyBUF_FORMAT = 0x0004
_PyBUF_C_CONTIGUOUS = 0x0020 | 0x0018  # C order, with strides and shape

_get = _c.pythonapi.PyObject_GetBuffer
_get.restype, _get.argtypes = _c.c_int, [_c.py_object, _c.POINTER(_PyBuffer), _c.c_int]
_release = _c.pythonapi.PyBuffer_Release
_release.restype, _release.argtypes = None, [_c.POINTER(_PyBuffer)]


class Buffer:
    """A held view of obj's memory: address, bytes, shape, element format.
    Release it (or use it as a context manager) once the library is done."""

    def __init__(self, obj, writable):
        self._held = False
        self._view = _PyBuffer()
        flags = _PyBUF_FORMAT | _PyBUF_C_CONTIGUOUS | (_PyBUF_WRITABLE if writable else 0)
        try:
            _get(obj, _c.byref(self._view), flags)
        except (BufferError, TypeError) as e:
            what = "a writable" if writable else "a"
            raise TypeError(f"jaccl needs {what} C-contiguous buffer, got "
                            f"{type(obj).__name__}: {e}") from None
        v = self._view
        self.obj = obj
        self.address = v.buf or 0
        self.nbytes = v.len
        self.itemsize = v.itemsize
        self.format = (v.format or b"B").decode()
        self.shape = tuple(v.shape[i] for i in range(v.ndim)) if v.ndim else ()
        self._held = True

    def release(self):
        if self._held:
            self._held = False
            _release(_c.byref(self._view))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def __del__(self):
        if sys is not None and not sys.is_finalizing():
            self.release()
