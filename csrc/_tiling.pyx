# cython: boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Fused normalize + tile: one pass from an 8/16-bit image into an NCHW float32 batch.

No validation here: ``edge.preprocess.tile`` checks shapes, dtypes and the grid first.
"""

from cython.parallel cimport prange
from libc.stdlib cimport malloc, free
from libc.stdint cimport uint8_t, uint16_t
from fused_types cimport pixel_t

cdef extern from "rows.h" nogil:
    void semedge_scale_row_u8(const uint8_t* src, float* dst, Py_ssize_t n, float lo, float inv)
    void semedge_scale_row_u16(const uint16_t* src, float* dst, Py_ssize_t n, float lo, float inv)
from _common cimport reflect101, scale_pixel

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define SEMEDGE_HAVE_OPENMP 1
    static int semedge_thread_id(void) { return omp_get_thread_num(); }
    #else
    #define SEMEDGE_HAVE_OPENMP 0
    static int semedge_thread_id(void) { return 0; }
    #endif
    """
    int SEMEDGE_HAVE_OPENMP
    int _thread_id "semedge_thread_id" () noexcept nogil

OPENMP = bool(SEMEDGE_HAVE_OPENMP)
"""Whether this build splits tiles over OpenMP threads."""


cdef void _fill_tile(const pixel_t[:, :] image, float lo, float inv_span, float* dst,
                     Py_ssize_t y0, Py_ssize_t x0, Py_ssize_t size,
                     Py_ssize_t* xs) noexcept nogil:
    cdef Py_ssize_t h = image.shape[0], w = image.shape[1]
    cdef Py_ssize_t y, x, sy
    cdef bint inside_x = x0 + size <= w
    cdef Py_ssize_t cs = image.strides[1] // sizeof(pixel_t)
    cdef const pixel_t* row
    cdef float* out_row
    if not inside_x:
        for x in range(size):
            xs[x] = reflect101(x0 + x, w) * cs
    for y in range(size):
        sy = y0 + y
        if sy >= h:
            sy = reflect101(sy, h)
        row = &image[sy, 0]
        out_row = dst + y * size
        if inside_x and cs == 1:
            if pixel_t is uint8_t:
                semedge_scale_row_u8(row + x0, out_row, size, lo, inv_span)
            else:
                semedge_scale_row_u16(row + x0, out_row, size, lo, inv_span)
        elif inside_x:
            for x in range(size):
                out_row[x] = scale_pixel(<float>row[(x0 + x) * cs], lo, inv_span)
        else:
            for x in range(size):
                out_row[x] = scale_pixel(<float>row[xs[x]], lo, inv_span)


def tile_into(const pixel_t[:, :] image not None, float lo, float inv_span,
              Py_ssize_t size, Py_ssize_t stride, Py_ssize_t rows, Py_ssize_t cols,
              float[:, :, :, ::1] out not None, int threads=1):
    """Normalize ``image`` with (lo, inv_span) and write its ``rows × cols`` tiles into ``out``.

    Tile ``k = r * cols + c`` starts at ``(r * stride, c * stride)``; pixels past the image
    are reflect-101 copies. ``out`` has shape ``(rows * cols, 1, size, size)``.
    """
    cdef Py_ssize_t n = rows * cols, k
    cdef int lanes = threads if threads > 1 else 1
    cdef Py_ssize_t* xs_all = <Py_ssize_t*>malloc(lanes * size * sizeof(Py_ssize_t))
    if xs_all == NULL:
        raise MemoryError("tile: cannot allocate scratch buffers")
    try:
        with nogil:
            if threads > 1:
                for k in prange(n, num_threads=threads, schedule="static"):
                    _fill_tile(image, lo, inv_span, &out[k, 0, 0, 0], (k // cols) * stride,
                               (k % cols) * stride, size, xs_all + _thread_id() * size)
            else:
                for k in range(n):
                    _fill_tile(image, lo, inv_span, &out[k, 0, 0, 0], (k // cols) * stride,
                               (k % cols) * stride, size, xs_all)
    finally:
        free(xs_all)
