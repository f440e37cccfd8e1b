# cython: boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Histogram-based order statistics of 8/16-bit images (no validation: see edge.preprocess)."""

from libc.stdint cimport uint8_t, uint16_t, uint32_t
from libc.stdlib cimport calloc, free
from fused_types cimport pixel_t

from libc.stdint cimport uint64_t

cdef extern from "rows.h" nogil:
    void semedge_cpu_init()
    void semedge_hist_row_u8(const uint8_t* row, Py_ssize_t n, uint32_t* hist)
    void semedge_hist_row_u16(const uint16_t* row, Py_ssize_t n, uint32_t* hist)
    void semedge_count_ge_u8(const uint8_t* row, Py_ssize_t n, const uint8_t* thr, int nthr,
                             uint64_t* counts)
    void semedge_count_ge_hi_u16(const uint16_t* row, Py_ssize_t n, const uint8_t* thr,
                                 int nthr, uint64_t* counts)
    void semedge_hist_fine_u16(const uint16_t* row, Py_ssize_t n, unsigned hb0, unsigned hb1,
                               uint32_t* fine)
    int SEMEDGE_HAVE_COUNT_GE
    int SEMEDGE_U16_LANES

semedge_cpu_init()

COUNT_GE = bool(SEMEDGE_HAVE_COUNT_GE)
"""Whether contiguous images may use the vector threshold counts instead of a histogram."""

WIDE_RANGE = 4096
"""16-bit images whose sampled rows span at least this many grey levels take the two-level
path (high-byte threshold counts, then a filtered low-byte histogram); narrower ones keep
the 65536-bin histogram, which then stays in cache. Only speed depends on the choice."""


cdef void _count_ge(const uint8_t[:, :] image, const uint8_t* thr, int nthr,
                    uint64_t* counts) noexcept nogil:
    cdef Py_ssize_t y, k
    for k in range(nthr):
        counts[k] = 0
    for y in range(image.shape[0]):
        semedge_count_ge_u8(&image[y, 0], image.shape[1], thr, nthr, counts)


cdef void _order_statistics_u8_counts(const uint8_t[:, :] image, Py_ssize_t rank_lo,
                                      Py_ssize_t rank_hi, Py_ssize_t* value_lo,
                                      Py_ssize_t* value_hi) noexcept nogil:
    # The value of rank r is max{t : L(t) <= r}, L(t) = #pixels < t = n - #pixels >= t.
    # Pass 1 brackets it in 64 values (t = 64, 128, 192), passes 2-4 in 16, 4, 1.
    cdef unsigned long long n = <unsigned long long>image.shape[0] * image.shape[1]
    cdef uint8_t thr[6]
    cdef uint64_t counts[6]
    cdef Py_ssize_t base[2]
    cdef Py_ssize_t ranks[2]
    cdef Py_ssize_t k, j, step
    ranks[0] = rank_lo
    ranks[1] = rank_hi
    for k in range(3):
        thr[k] = <uint8_t>(64 * (k + 1))
    _count_ge(image, thr, 3, counts)
    for j in range(2):
        base[j] = 0
        for k in range(3):
            if n - counts[k] <= <unsigned long long>ranks[j]:
                base[j] = 64 * (k + 1)
    step = 16
    while step >= 1:
        for j in range(2):
            for k in range(3):
                thr[3 * j + k] = <uint8_t>(base[j] + step * (k + 1))
        _count_ge(image, thr, 6, counts)
        for j in range(2):
            for k in range(3):
                if n - counts[3 * j + k] <= <unsigned long long>ranks[j]:
                    base[j] = thr[3 * j + k]
        step //= 4
    value_lo[0] = base[0]
    value_hi[0] = base[1]


cdef bint _looks_wide(const uint16_t[:, :] image, Py_ssize_t wide) noexcept nogil:
    # Grey-level span of 16 rows spread over the image (a guess: only speed depends on it).
    cdef Py_ssize_t h = image.shape[0], w = image.shape[1], i, x, y
    cdef unsigned lo = 65535, hi = 0, v
    for i in range(16):
        y = (i * h) // 16
        for x in range(w):
            v = image[y, x]
            lo = v if v < lo else lo
            hi = v if v > hi else hi
    return <Py_ssize_t>hi - <Py_ssize_t>lo >= wide


cdef bint _order_statistics_u16_counts(const uint16_t[:, :] image, Py_ssize_t rank_lo,
                                       Py_ssize_t rank_hi, uint32_t* fine,
                                       Py_ssize_t* value_lo, Py_ssize_t* value_hi) noexcept nogil:
    # High byte H of each rank as for 8 bits (four passes of threshold counts on x >> 8),
    # then one pass histogramming the low bytes of the pixels with high byte H only:
    # L(256 H + t) = L(256 H) + #(x >> 8 == H, x & 255 < t). Returns False, having touched
    # nothing of ``fine``, when those pixels are over a quarter of the image (the caller
    # then builds the full histogram). ``fine``: 4 * 512 zeroed counters.
    cdef unsigned long long n = <unsigned long long>image.shape[0] * image.shape[1]
    cdef uint8_t thr[6]
    cdef uint64_t counts[6]
    cdef Py_ssize_t base[2]
    cdef Py_ssize_t upper[2]
    cdef Py_ssize_t ranks[2]
    cdef unsigned long long below[2]
    cdef unsigned long long above[2]
    cdef unsigned long long acc, hits, L
    cdef Py_ssize_t k, j, step, t, off, y
    ranks[0] = rank_lo
    ranks[1] = rank_hi
    for j in range(2):
        base[j], upper[j], below[j], above[j] = 0, 256, 0, n
    step = 64
    while step >= 1:
        for j in range(2):
            for k in range(3):
                thr[3 * j + k] = <uint8_t>(base[j] + step * (k + 1))
        for k in range(6):
            counts[k] = 0
        for y in range(image.shape[0]):
            if step == 64:
                semedge_count_ge_hi_u16(&image[y, 0], image.shape[1], thr, 3, counts)
            else:
                semedge_count_ge_hi_u16(&image[y, 0], image.shape[1], thr, 6, counts)
        for j in range(2):
            for k in range(3):
                # pass 1 counts thresholds 64, 128, 192 once, for both ranks
                L = n - counts[k if step == 64 else 3 * j + k]
                t = thr[k if step == 64 else 3 * j + k]
                if L <= <unsigned long long>ranks[j]:
                    base[j], below[j] = t, L
                elif t < upper[j]:
                    upper[j], above[j] = t, L
        step //= 4
    hits = above[0] - below[0]
    if base[1] != base[0]:
        hits += above[1] - below[1]
    if hits > n // 4:
        return False
    for y in range(image.shape[0]):
        semedge_hist_fine_u16(&image[y, 0], image.shape[1], <unsigned>base[0], <unsigned>base[1],
                              fine)
    for j in range(2):
        off = 256 if j == 1 and base[1] != base[0] else 0
        acc = below[j]
        for t in range(256):
            acc += fine[off + t] + fine[512 + off + t] + fine[1024 + off + t] + fine[1536 + off + t]
            if acc > <unsigned long long>ranks[j]:
                if j == 0:
                    value_lo[0] = 256 * base[0] + t
                else:
                    value_hi[0] = 256 * base[1] + t
                break
    return True


def order_statistics(const pixel_t[:, :] image not None, Py_ssize_t rank_lo, Py_ssize_t rank_hi):
    """Return the pixel values of 0-based ranks ``rank_lo`` and ``rank_hi`` in sorted order.

    Contiguous 8-bit rows on x86-64: four passes of vectorized threshold counts (see
    rows.h). Contiguous 16-bit rows there whose grey levels look widely spread: the same on
    the high bytes, then a histogram of the low bytes of the pixels in the two high-byte
    bins found. Otherwise one pass builds the histogram (256 or 65536 bins, in interleaved
    sub-histograms) and a cumulative scan finds both ranks. The caller guarantees fewer
    than 2**32 pixels and 0 <= rank_lo <= rank_hi < pixels.
    """
    cdef Py_ssize_t levels = (<Py_ssize_t>1) << (8 * sizeof(pixel_t))
    cdef Py_ssize_t lanes = 4 if pixel_t is uint8_t else SEMEDGE_U16_LANES
    cdef Py_ssize_t h = image.shape[0], w = image.shape[1]
    cdef Py_ssize_t cs = image.strides[1] // sizeof(pixel_t)
    cdef Py_ssize_t y, x, v, lane
    cdef unsigned long long acc = 0
    cdef Py_ssize_t value_lo = -1, value_hi = -1
    cdef const pixel_t* row
    cdef uint32_t* hist
    cdef bint done = False
    cdef Py_ssize_t wide = WIDE_RANGE
    if pixel_t is uint8_t:
        if SEMEDGE_HAVE_COUNT_GE and cs == 1:
            with nogil:
                _order_statistics_u8_counts(image, rank_lo, rank_hi, &value_lo, &value_hi)
            return value_lo, value_hi
    hist = <uint32_t*>calloc(lanes * levels, sizeof(uint32_t))
    if hist == NULL:
        raise MemoryError("percentiles: cannot allocate the histogram")
    if pixel_t is uint16_t:
        if SEMEDGE_HAVE_COUNT_GE and cs == 1:
            with nogil:
                if _looks_wide(image, wide):
                    done = _order_statistics_u16_counts(image, rank_lo, rank_hi, hist,
                                                        &value_lo, &value_hi)
            if done:
                free(hist)
                return value_lo, value_hi
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
