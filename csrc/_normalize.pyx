# cython: boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Percentile-clip normalization of a whole image into float32 (no validation)."""

from libc.stdint cimport uint8_t, uint16_t
from fused_types cimport pixel_t

cdef extern from "rows.h" nogil:
    void semedge_scale_row_u8(const uint8_t* src, float* dst, Py_ssize_t n, float lo, float inv)
    void semedge_scale_row_u16(const uint16_t* src, float* dst, Py_ssize_t n, float lo, float inv)
from _common cimport scale_pixel


def normalize_into(const pixel_t[:, :] image not None, float lo, float inv_span,
                   float[:, ::1] out not None):
    """Write ``clip((image - lo) * inv_span, 0, 1)`` (float32 arithmetic) into ``out``."""
    cdef Py_ssize_t h = image.shape[0], w = image.shape[1]
    cdef Py_ssize_t cs = image.strides[1] // sizeof(pixel_t)
    cdef Py_ssize_t y, x
    cdef const pixel_t* row
    cdef float* dst
    with nogil:
        for y in range(h):
            row = &image[y, 0]
            dst = &out[y, 0]
            if cs == 1:
                if pixel_t is uint8_t:
                    semedge_scale_row_u8(row, dst, w, lo, inv_span)
                else:
                    semedge_scale_row_u16(row, dst, w, lo, inv_span)
            else:
                for x in range(w):
                    dst[x] = scale_pixel(<float>row[x * cs], lo, inv_span)
