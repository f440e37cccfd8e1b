# cython: boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Histogram-based order statistics of 8/16-bit images (no validation: see edge.preprocess)."""

from libc.stdint cimport uint8_t, uint16_t, uint32_t
from libc.stdlib cimport calloc, free
from fused_types cimport pixel_t

cdef extern from "rows.h" nogil:
    void semedge_hist_row_u8(const uint8_t* row, Py_ssize_t n, uint32_t* hist)
    void semedge_hist_row_u16(const uint16_t* row, Py_ssize_t n, uint32_t* hist)


def order_statistics(const pixel_t[:, :] image not None, Py_ssize_t rank_lo, Py_ssize_t rank_hi):
    """Return the pixel values of 0-based ranks ``rank_lo`` and ``rank_hi`` in sorted order.

    One pass builds the histogram (256 or 65536 bins, in interleaved sub-histograms); a
    cumulative scan finds both ranks. The caller guarantees fewer than 2**32 pixels.
    """
    cdef Py_ssize_t levels = (<Py_ssize_t>1) << (8 * sizeof(pixel_t))
    cdef Py_ssize_t lanes = 4 if pixel_t is uint8_t else 1
    cdef Py_ssize_t h = image.shape[0], w = image.shape[1]
    cdef Py_ssize_t cs = image.strides[1] // sizeof(pixel_t)
    cdef Py_ssize_t y, x, v, lane
    cdef unsigned long long acc = 0
    cdef Py_ssize_t value_lo = -1, value_hi = -1
    cdef const pixel_t* row
    cdef uint32_t* hist = <uint32_t*>calloc(lanes * levels, sizeof(uint32_t))
    if hist == NULL:
        raise MemoryError("percentiles: cannot allocate the histogram")
    try:
        with nogil:
            for y in range(h):
                row = &image[y, 0]
                if cs != 1:
                    for x in range(w):
                        hist[row[x * cs]] += 1
                elif pixel_t is uint8_t:
                    semedge_hist_row_u8(row, w, hist)
                else:
                    semedge_hist_row_u16(row, w, hist)
            for v in range(levels):
                for lane in range(lanes):
                    acc += hist[lane * levels + v]
                if value_lo < 0 and acc > <unsigned long long>rank_lo:
                    value_lo = v
                if acc > <unsigned long long>rank_hi:
                    value_hi = v
                    break
    finally:
        free(hist)
    return value_lo, value_hi
