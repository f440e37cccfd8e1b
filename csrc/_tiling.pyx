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
    void semedge_stream_row_u8(const uint8_t* src, float* dst, Py_ssize_t n, float lo, float inv)
    void semedge_stream_row_u16(const uint16_t* src, float* dst, Py_ssize_t n, float lo, float inv)
    void semedge_cpu_init()
    void semedge_stream_fence()
    int SEMEDGE_HAVE_STREAM
from _common cimport reflect101

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


STREAM_MIN_BYTES = 4 * 2**20
"""Batches at least this large are written with non-temporal stores (x86-64): they do not
fit a core's L2 anyway, and skipping the read-for-ownership of each line halves the memory
traffic of the pass. Smaller batches stay in cache for the model that reads them next."""

semedge_cpu_init()


cdef inline void _scale_row(const pixel_t* src, float* dst, Py_ssize_t n, float lo,
                            float inv_span, bint stream) noexcept nogil:
    if pixel_t is uint8_t:
        if stream:
            semedge_stream_row_u8(src, dst, n, lo, inv_span)
        else:
            semedge_scale_row_u8(src, dst, n, lo, inv_span)
    else:
        if stream:
            semedge_stream_row_u16(src, dst, n, lo, inv_span)
        else:
            semedge_scale_row_u16(src, dst, n, lo, inv_span)


cdef void _fill_tile(const pixel_t[:, :] image, float lo, float inv_span, float* dst,
                     Py_ssize_t y0, Py_ssize_t x0, Py_ssize_t size,
                     Py_ssize_t* xs, pixel_t* gathered, bint stream) noexcept nogil:
    cdef Py_ssize_t h = image.shape[0], w = image.shape[1]
    cdef Py_ssize_t y, x, sy
    cdef Py_ssize_t cs = image.strides[1] // sizeof(pixel_t)
    # Columns [0, n_in) of the tile lie inside the image; the rest are reflect-101 copies.
    cdef Py_ssize_t n_in = w - x0 if x0 < w else 0
    cdef const pixel_t* row
    cdef float* out_row
    if n_in > size:
        n_in = size
    if cs != 1:
        n_in = 0  # strided rows: gather every column
    for x in range(n_in, size):
        xs[x] = reflect101(x0 + x, w) * cs
    for y in range(size):
        sy = y0 + y
        if sy >= h:
            sy = reflect101(sy, h)
        row = &image[sy, 0]
        out_row = dst + y * size
        if n_in > 0:
            _scale_row(row + x0, out_row, n_in, lo, inv_span, stream)
        if n_in < size:
            # Border (or strided) columns: gather the pixels, then the same row kernel.
            for x in range(n_in, size):
                gathered[x] = row[xs[x]]
            _scale_row(gathered + n_in, out_row + n_in, size - n_in, lo, inv_span, stream)
    if stream:
        semedge_stream_fence()


def tile_into(const pixel_t[:, :] image not None, float lo, float inv_span,
              Py_ssize_t size, Py_ssize_t stride, Py_ssize_t rows, Py_ssize_t cols,
              float[:, :, :, ::1] out not None, int threads=1):
    """Normalize ``image`` with (lo, inv_span) and write its ``rows × cols`` tiles into ``out``.

    Tile ``k = r * cols + c`` starts at ``(r * stride, c * stride)``; pixels past the image
    are reflect-101 copies. ``out`` has shape ``(rows * cols, 1, size, size)``.
    """
    cdef Py_ssize_t n = rows * cols, k
    cdef int lanes = threads if threads > 1 else 1
    cdef bint stream = SEMEDGE_HAVE_STREAM and n * size * size * sizeof(float) >= STREAM_MIN_BYTES
    cdef Py_ssize_t* xs_all = <Py_ssize_t*>malloc(lanes * size * sizeof(Py_ssize_t))
    cdef pixel_t* gathered_all = <pixel_t*>malloc(lanes * size * sizeof(pixel_t))
    if xs_all == NULL or gathered_all == NULL:
        free(xs_all)
        free(gathered_all)
        raise MemoryError("tile: cannot allocate scratch buffers")
    try:
        with nogil:
            if threads > 1:
                for k in prange(n, num_threads=threads, schedule="static"):
                    _fill_tile(image, lo, inv_span, &out[k, 0, 0, 0], (k // cols) * stride,
                               (k % cols) * stride, size, xs_all + _thread_id() * size,
                               gathered_all + _thread_id() * size, stream)
            else:
                for k in range(n):
                    _fill_tile(image, lo, inv_span, &out[k, 0, 0, 0], (k // cols) * stride,
                               (k % cols) * stride, size, xs_all, gathered_all, stream)
    finally:
        free(xs_all)
        free(gathered_all)
