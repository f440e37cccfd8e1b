# Small inline helpers shared by the kernels (no Python objects, callable without the GIL).

cdef inline Py_ssize_t reflect101(Py_ssize_t i, Py_ssize_t n) noexcept nogil:
    """Index ``i`` folded into [0, n) by reflect-101 (edge pixel not repeated)."""
    cdef Py_ssize_t period
    if n == 1:
        return 0
    period = 2 * (n - 1)
    i = i % period
    if i < 0:
        i += period
    if i >= n:
        i = period - i
    return i


cdef inline float scale_pixel(float v, float lo, float inv_span) noexcept nogil:
    """``clip((v - lo) * inv_span, 0, 1)`` in float32: the one normalization formula."""
    cdef float x = (v - lo) * inv_span
    x = x if x > 0.0 else 0.0
    return x if x < 1.0 else 1.0
